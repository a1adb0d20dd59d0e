// Where a vm_pool's sandboxes come from: restores of a snapshot through a restore_pool, cold
// boots, or (unit tests) sandboxes on an in-process VM. A source makes one ready sandbox per
// call; the pool decides how many and when.
#pragma once

#include "mimobox/vm/microvm_sandbox.hpp"
#include "mimobox/vm/restore_pool.hpp"
#include "mimobox/vm/vm_pool.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <tuple>

/// A sandbox as a vm_pool holds it: on its own (booted), or inside the restore_pool handle that
/// returns its shell's capacity when it goes.
struct mimobox::vm::pooled_vm::holder {
    microvm_sandbox booted;
    pooled_restore_vm restored;
    microvm_sandbox& sandbox() noexcept { return restored.valid() ? restored.sandbox() : booted; }
};

namespace mimobox::vm::detail {

class vm_source {
public:
    using error_code = boost::system::error_code;
    virtual ~vm_source() = default;
    /// Starts one sandbox (ready) with the pool's sandbox_config. Runs on the pool's strand;
    /// the sandbox's own work runs on its own.
    virtual boost::asio::awaitable<std::tuple<error_code, std::unique_ptr<pooled_vm::holder>>> make() = 0;
    /// The pool stops: let go of what the source keeps for later (a restore_pool's shells).
    virtual void stop() noexcept {}
};

/// The source a vm_pool_config names: its snapshot through a restore_pool, else its boot config.
std::unique_ptr<vm_source> make_vm_source(boost::asio::any_io_executor io, const vm_pool_config& config);

}  // namespace mimobox::vm::detail
