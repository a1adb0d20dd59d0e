// Restores from snapshots into VM shells made ahead of time. A shell is a VM whose KVM objects,
// devices and vCPUs exist (kvm_backend::async_prepare) but which has no memory, no guest state
// and no thread; a restore into it maps the snapshot's memory file and sets state, so creating
// the VM is off the restore's path. The pool refills shells in the background, as coroutines on
// the executor it was given, up to min_idle_shells. A shell is used once: a restored VM is
// destroyed when its pooled_restore_vm goes, and the pool makes a fresh shell.
//
//   restore_pool pool(ex, pool_config);
//   auto vm = co_await pool.async_restore(snapshot, sandbox_config(), asio::use_awaitable);
//   co_await vm.sandbox().async_exec(argv, asio::use_awaitable);
//
// Threading: the pool's work runs on a strand of its executor; stats() and the destructor may
// be called from any thread. Cancellation: async_restore honours terminal and partial while it
// waits for a shell (it then completes with operation_aborted and takes none); once the restore
// has begun it runs to its end. Destroying the pool stops it (as async_stop, without waiting).
#pragma once

#include "mimobox/vm/microvm_sandbox.hpp"
#include "mimobox/vm/microvm_snapshot.hpp"
#include "mimobox/vm/sandbox_config.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>

namespace mimobox::vm {

namespace detail {
class restore_pool_state;
}

struct restore_pool_config {
    restore_pool_config() = default;  // not an aggregate (decision 0021)

    std::size_t min_idle_shells = 2;      ///< shells kept ready
    std::size_t max_shells = 64;          ///< shells plus restored VMs alive, at most
    unsigned vcpu_count = 1;              ///< every shell's shape: a snapshot must have the same
    std::uint32_t memory_mib = 256;
    vsock_link vsock = vsock_link::virtio_pci;
    std::uint32_t vsock_cid = 3;
    std::size_t refill_concurrency = 1;   ///< shells made at once
    /// How long async_restore waits for capacity when max_shells are out, before
    /// restore_pool_errc::exhausted.
    std::chrono::milliseconds acquire_timeout{30'000};
};

struct restore_pool_stats {
    std::size_t idle_shells = 0;  ///< ready now
    std::size_t in_use = 0;       ///< restored VMs not yet released
    std::uint64_t created = 0;    ///< shells made
    std::uint64_t restored = 0;   ///< restores handed out
    std::uint64_t failed = 0;     ///< shells or restores that failed
    /// Restore latency (shell taken to sandbox ready), counts per bucket: below 1, 2, 5, 10,
    /// 20, 50, 100, 200, 500 ms, and 500 ms or more.
    std::array<std::uint64_t, 10> restore_latency_ms{};
    static constexpr std::array<std::uint32_t, 9> latency_bucket_ms{1, 2, 5, 10, 20, 50, 100, 200, 500};
};

/// A sandbox restored through a restore_pool. Move-only; releasing it (or destroying it)
/// destroys the VM and returns its capacity to the pool, which may already be gone.
class pooled_restore_vm {
public:
    pooled_restore_vm() = default;
    pooled_restore_vm(microvm_sandbox sandbox, std::weak_ptr<detail::restore_pool_state> pool) noexcept;
    pooled_restore_vm(pooled_restore_vm&& other) noexcept;
    pooled_restore_vm& operator=(pooled_restore_vm&& other) noexcept;
    ~pooled_restore_vm() { release(); }

    bool valid() const noexcept { return held_; }
    /// The restored sandbox (ready). Precondition: valid().
    microvm_sandbox& sandbox() noexcept { return sandbox_; }
    /// Destroys the VM now and returns the capacity; afterwards valid() is false.
    void release() noexcept;

private:
    microvm_sandbox sandbox_;
    std::weak_ptr<detail::restore_pool_state> pool_;
    bool held_ = false;
};

class restore_pool {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    /// Starts refilling at once, after raising this process's RLIMIT_NOFILE soft limit to its
    /// hard limit where allowed (each VM holds a dozen descriptors). Running out of descriptors
    /// or memory anyway fails restores with the system's error, which compares equal to
    /// condition::out_of_host_resources. A config that cannot work (max_shells 0, min_idle_shells above
    /// max_shells, refill_concurrency 0, vsock over COM2) makes every async_restore fail with
    /// restore_pool_errc::invalid_config.
    restore_pool(executor_type executor, restore_pool_config config);
    restore_pool(const restore_pool&) = delete;
    restore_pool& operator=(const restore_pool&) = delete;
    ~restore_pool();

    const restore_pool_config& config() const noexcept;
    restore_pool_stats stats() const;

    /// Takes a shell (waiting for one up to acquire_timeout if none is ready and max_shells
    /// are out), restores `snapshot` into it and starts a sandbox on it with `config` (as
    /// microvm_sandbox::async_restore). Errors: restore_pool_errc::shape_mismatch (the
    /// snapshot's vCPUs, memory or vsock link differ from the shells'), stopped, exhausted,
    /// invalid_config; the restore's own (snapshot_errc, sandbox_errc).
    template <boost::asio::completion_token_for<void(error_code, pooled_restore_vm)> Token>
    auto async_restore(microvm_snapshot snapshot, sandbox_config config, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, pooled_restore_vm)>(
            [this](auto handler, microvm_snapshot s, sandbox_config c) { initiate_restore(std::move(s), std::move(c), std::move(handler)); },
            token, std::move(snapshot), std::move(config));
    }

    /// Stops the pool: waiting and in-flight restores complete with operation_aborted (a restore
    /// that finishes after the stop destroys its VM), idle shells are destroyed, no refill
    /// follows. Completes once every shell the pool held is gone. Not cancellable.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_stop(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto handler) { initiate_stop(std::move(handler)); }, token);
    }

private:
    void initiate_restore(microvm_snapshot snapshot, sandbox_config config,
                          boost::asio::any_completion_handler<void(error_code, pooled_restore_vm)> handler);
    void initiate_stop(boost::asio::any_completion_handler<void(error_code)> handler);

    std::shared_ptr<detail::restore_pool_state> state_;
};

}  // namespace mimobox::vm
