// Ready sandboxes, handed to one user each. The pool keeps min_idle sandboxes started (restored
// from a snapshot through a restore_pool, or booted), paused while they wait so that they hold
// no thread. async_acquire hands one out; releasing it destroys the VM (never reused: what one
// user did in it, files anywhere, processes, environment, cannot reach the next) and the pool
// starts a fresh one. Background refill, idle eviction and health checks are coroutines on the
// pool's strand.
//
//   vm_pool pool(ex, pool_config);
//   auto vm = co_await pool.async_acquire(asio::use_awaitable);
//   auto r = co_await vm.sandbox().async_exec(argv, asio::use_awaitable);
//   vm.release();  // or let it go out of scope
//
// Threading: the pool's work runs on a strand of its executor; stats() and the destructor may
// be called from any thread. Cancellation: async_acquire honours terminal and partial while it
// waits (it then completes with operation_aborted and takes nothing). Destroying the pool
// without async_stop does what async_stop does, without waiting for it (at once when called
// on the pool's strand, else in its next turn): idle sandboxes are destroyed (each stops its
// VM), waiting acquisitions complete with pool_errc::stopped.
#pragma once

#include "mimobox/vm/microvm_config.hpp"
#include "mimobox/vm/microvm_sandbox.hpp"
#include "mimobox/vm/microvm_snapshot.hpp"
#include "mimobox/vm/sandbox_config.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

namespace mimobox::vm {

namespace detail {
class vm_pool_state;
class vm_source;
}  // namespace detail

struct vm_pool_config {
    vm_pool_config() = default;  // not an aggregate (decision 0021)

    /// Where sandboxes come from: restores of `snapshot` (through a restore_pool of its shape)
    /// when set, else cold boots of `boot`.
    std::optional<microvm_snapshot> snapshot;
    microvm_config boot;
    /// Every sandbox's settings (hostname, timeouts, limits).
    sandbox_config sandbox;

    std::size_t min_idle = 2;   ///< sandboxes kept started and waiting
    std::size_t max_size = 64;  ///< idle, handed out and being started together, at most
    std::size_t refill_concurrency = 2;  ///< sandboxes started at once
    /// An idle sandbox older than this is replaced by a fresh one (0: never). Bounds how stale
    /// a waiting guest's clock, entropy and page cache get.
    std::chrono::milliseconds max_idle_duration{600'000};
    /// How often every idle sandbox is checked: its VM still runs and its agent answers (0:
    /// never). One that fails is replaced and counted in `failures`.
    std::chrono::milliseconds health_check_interval{60'000};
    /// How long async_acquire waits when none is idle (pool_errc::acquire_timeout after it;
    /// 0: no wait, pool_errc::exhausted at once when max_size are out).
    std::chrono::milliseconds acquire_timeout{30'000};
    /// Pause idle sandboxes (no thread each). The first operation of the user resumes it.
    /// With it, sandboxes start in batches of up to refill_concurrency, and the new idle ones
    /// are paused between batches: no pause runs while a sandbox starts (docs/known-issues.md).
    bool pause_idle = true;
    /// Starting sandboxes that fail this many times in a row (the source is broken: a missing
    /// kernel, no memory) fail the waiting acquisitions with pool_errc::unhealthy and the pool
    /// stops starting more until an acquisition asks again.
    std::size_t max_consecutive_failures = 3;
};

struct vm_pool_stats {
    std::size_t idle = 0;           ///< started and waiting now
    std::size_t in_use = 0;         ///< handed out, not yet released
    std::size_t starting = 0;       ///< being started now
    std::size_t paused = 0;         ///< of the idle ones, paused (holding no vCPU thread)
    std::uint64_t hits = 0;         ///< acquisitions served by an idle sandbox at once
    std::uint64_t misses = 0;       ///< acquisitions that had to wait for one to start
    std::uint64_t evictions = 0;    ///< idle sandboxes replaced for their age
    /// Sandboxes that failed to start, stopped on their own while idle (replaced within a second),
    /// or failed a health check.
    std::uint64_t failures = 0;
    std::uint64_t created = 0;      ///< sandboxes started
    /// Acquisition latency (request to handed out), counts per bucket: below 1, 2, 5, 10, 20,
    /// 50, 100, 200, 500 ms, and 500 ms or more.
    std::array<std::uint64_t, 10> acquire_latency_ms{};
    static constexpr std::array<std::uint32_t, 9> latency_bucket_ms{1, 2, 5, 10, 20, 50, 100, 200, 500};
};

/// A sandbox handed out by a vm_pool. Move-only; releasing it (or destroying it) destroys the
/// VM and returns its capacity to the pool, which may already be gone.
class pooled_vm {
public:
    pooled_vm() noexcept;  // out of line: `holder` is complete only there
    pooled_vm(pooled_vm&& other) noexcept;
    pooled_vm& operator=(pooled_vm&& other) noexcept;
    ~pooled_vm();  ///< release()

    bool valid() const noexcept { return static_cast<bool>(holder_); }
    /// The sandbox (ready; it resumes on its first operation if the pool had paused it).
    /// Without valid() (released, moved from, or a failed acquisition's), an empty sandbox
    /// whose operations complete with lifecycle_errc::invalid_state.
    microvm_sandbox& sandbox() noexcept;
    /// Destroys the VM now and returns the capacity; afterwards valid() is false.
    void release() noexcept;

    /// What the pool hands out (the sandbox and whatever keeps its VM: a restore_pool's
    /// handle). Internal.
    struct holder;
    pooled_vm(std::unique_ptr<holder> held, std::weak_ptr<detail::vm_pool_state> pool) noexcept;

private:
    std::unique_ptr<holder> holder_;
    std::weak_ptr<detail::vm_pool_state> pool_;
    microvm_sandbox empty_;  // what sandbox() gives without a holder
};

class vm_pool {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    /// Starts filling at once. A config that cannot work (max_size 0, min_idle above
    /// max_size, refill_concurrency 0, an invalid snapshot) makes every async_acquire fail
    /// with pool_errc::invalid_config.
    vm_pool(executor_type executor, vm_pool_config config);
    /// For tests: sandboxes come from `source` instead of the config's snapshot or boot.
    vm_pool(executor_type executor, vm_pool_config config, std::unique_ptr<detail::vm_source> source);
    vm_pool(const vm_pool&) = delete;
    vm_pool& operator=(const vm_pool&) = delete;
    ~vm_pool();

    const vm_pool_config& config() const noexcept;
    vm_pool_stats stats() const;

    /// Hands out an idle sandbox, or waits (up to acquire_timeout) for one to start. Errors:
    /// pool_errc::acquire_timeout, exhausted (acquire_timeout 0 and max_size out), stopped,
    /// unhealthy (starting sandboxes keeps failing; the last failure is not kept),
    /// invalid_config; operation_aborted when cancelled.
    template <boost::asio::completion_token_for<void(error_code, pooled_vm)> Token>
    auto async_acquire(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, pooled_vm)>(
            [this](auto handler) { initiate_acquire(std::move(handler)); }, token);
    }

    /// Stops the pool: waiting acquisitions complete with pool_errc::stopped, idle sandboxes
    /// are destroyed, sandboxes still starting are destroyed when they are up, none is started
    /// again. Handed-out sandboxes stay their users' until released. Completes once every VM
    /// the pool held is gone. Not cancellable.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_stop(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto handler) { initiate_stop(std::move(handler)); }, token);
    }

private:
    void initiate_acquire(boost::asio::any_completion_handler<void(error_code, pooled_vm)> handler);
    void initiate_stop(boost::asio::any_completion_handler<void(error_code)> handler);

    std::shared_ptr<detail::vm_pool_state> state_;
};

}  // namespace mimobox::vm
