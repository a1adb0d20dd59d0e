#include "pool/fd_limit.hpp"

#include <sys/resource.h>

namespace mimobox::vm::detail {

void raise_fd_limit() noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);  // refused: the limit stays as it was
}

}  // namespace mimobox::vm::detail
