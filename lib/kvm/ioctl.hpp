// ioctl with errno turned into an error_code: the one place lib/kvm talks to the kernel.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cerrno>
#include <sys/ioctl.h>

namespace mimobox::kvm {

using boost::system::error_code;
using boost::system::result;

inline error_code last_errno() noexcept { return {errno, boost::system::system_category()}; }

/// ioctl returning its non-negative result, or errno. EINTR is returned, not retried: for
/// KVM_RUN it is how a kick arrives, and the other KVM ioctls do not block.
template <class Arg>
result<int> checked_ioctl(int fd, unsigned long request, Arg arg) noexcept {
    int r = ::ioctl(fd, request, arg);
    if (r < 0) return last_errno();
    return r;
}

}  // namespace mimobox::kvm
