// The VMM: boots a microvm_config's kernel and initramfs on /dev/kvm and drives it from
// coroutines on the caller's executor. Each running vCPU has a thread inside KVM_RUN; every exit
// is decoded there and handled on this VM's strand, so devices never run concurrently.
//
// Lifetimes: operations keep the VM's internals alive until they complete, so the backend may
// be destroyed with operations in flight. Destroying a running backend stops the VM: the
// vCPU threads are kicked out of KVM_RUN and joined by the time the last in-flight operation
// completes (or the executor's io_context is destroyed).
//
// Cancellation: async_wait_console, async_wait_stopped, async_vsock_connect and
// async_vsock_accept support terminal per-operation cancellation (they complete with
// operation_aborted; the VM is unaffected; a cancelled connect's half-open connection is reset),
// including a cancellation emitted right after initiation. async_boot, async_pause, async_resume and
// async_stop are short and not cancellable. Pending waits complete when the backend is stopped
// or destroyed, even if it never booted.
#pragma once

#include "mimobox/vm/kvm_exit_reason.hpp"
#include "mimobox/vm/kvm_lifecycle.hpp"
#include "mimobox/vm/microvm_config.hpp"
#include "mimobox/vm/microvm_snapshot.hpp"
#include "mimobox/vm/vsock_stream.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mimobox::vm {

namespace detail {
class machine;
}

class kvm_backend {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    kvm_backend(executor_type executor, microvm_config config);
    kvm_backend(kvm_backend&&) noexcept;
    kvm_backend& operator=(kvm_backend&&) noexcept;
    ~kvm_backend();

    executor_type get_executor() const noexcept;
    const microvm_config& config() const noexcept;

    /// Current state (a snapshot; it may change right after).
    kvm_lifecycle state() const noexcept;
    /// The retained tail of the serial console (up to config().console_capacity bytes).
    std::string console_output() const;
    /// Called on the VM's strand with each chunk of console output. Set it before booting.
    void set_console_callback(std::function<void(std::string_view)> callback);

    /// Validates the config, opens KVM, builds memory, loads the kernel and initramfs, creates
    /// the vCPUs and starts them. Completes once they run: microvm_errc for bad config or
    /// images (unsupported_platform where KVM is unusable), lifecycle_errc::invalid_state if
    /// not in `created`.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_boot(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_boot(std::move(handler)); }, token);
    }

    /// Instead of async_boot: builds the VM from `snapshot` and runs it from where it was
    /// captured. Guest RAM is the snapshot's memory file mapped copy-on-write (nothing is copied;
    /// pages load as the guest touches them), so the cost does not grow with memory size. The
    /// config's vcpu_count, memory_mib and vsock must be the snapshot's
    /// (snapshot_errc::shape_mismatch); its kernel and initramfs are not read; its vsock_cid is
    /// the guest's new CID. The guest's vsock connections are gone (its listeners stay). Errors:
    /// snapshot_errc (shape, CPU, damaged state), the boot's platform errors, lifecycle_errc::
    /// invalid_state if not in `created`. Not cancellable (it completes promptly). The snapshot
    /// may be destroyed once this completes: the VM keeps what it needs.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_restore(microvm_snapshot snapshot, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler, microvm_snapshot s) { initiate_restore(std::move(s), std::move(handler)); }, token,
            std::move(snapshot));
    }

    /// Builds a shell ahead of async_restore: the KVM VM, its devices and vCPUs, with no guest
    /// memory, no guest state and no thread (state stays `created`). A restore into a shell
    /// only maps memory and sets state, so a pool of shells (restore_pool) takes VM creation
    /// out of the restore. The config's kernel and initramfs are not read. Errors: the boot's
    /// platform errors, snapshot_errc::unsupported_vm (vsock over COM2), lifecycle_errc::
    /// invalid_state if not `created` or already prepared. Not cancellable.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_prepare(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_prepare(std::move(handler)); }, token);
    }

    /// Captures a paused VM (lifecycle_errc::invalid_state otherwise): every vCPU's, the VM's
    /// and the devices' state, and the memory the guest touched, into a microvm_snapshot held
    /// in memory (save() writes it to disk). The VM stays paused; resume it or stop it. Costs
    /// time and host memory in proportion to the guest memory in use, not its size. Errors:
    /// snapshot_errc::unsupported_vm (vsock over COM2), or the system's (KVM, memfd). Not
    /// cancellable.
    template <boost::asio::completion_token_for<void(error_code, microvm_snapshot)> Token>
    auto async_snapshot(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, microvm_snapshot)>(
            [this](auto handler) { initiate_snapshot(std::move(handler)); }, token);
    }

    /// Kicks every vCPU out of KVM_RUN and ends its thread; completes once none runs.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_pause(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_pause(std::move(handler)); }, token);
    }

    /// Starts a thread per vCPU again; completes once they run.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_resume(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_resume(std::move(handler)); }, token);
    }

    /// Stops the VM and joins every vCPU thread. Succeeds if already stopped.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_stop(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_stop(std::move(handler)); }, token);
    }

    /// Completes when the VM has stopped, for whatever reason, with why.
    template <boost::asio::completion_token_for<void(error_code, vm_stop_info)> Token>
    auto async_wait_stopped(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, vm_stop_info)>(
            [this](auto handler) { initiate_wait_stopped(std::move(handler)); }, token);
    }

    /// Completes when `text` appears in the console output (searching the retained tail first),
    /// or with lifecycle_errc::vm_stopped if the VM stops before it does.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_wait_console(std::string text, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler, std::string t) { initiate_wait_console(std::move(t), std::move(handler)); }, token,
            std::move(text));
    }

    /// Connects to a listener on `guest_port` inside the guest (host CID 2 -> guest CID).
    /// vsock_errc::connection_refused when nothing listens there; operation_aborted if the VM
    /// stops first or on cancellation. A guest that never answers (its driver not up yet) leaves
    /// it pending: bound it with a timer and cancellation.
    template <boost::asio::completion_token_for<void(error_code, vsock_stream)> Token>
    auto async_vsock_connect(std::uint32_t guest_port, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, vsock_stream)>(
            [this, guest_port](auto handler) { initiate_vsock_connect(guest_port, std::move(handler)); }, token);
    }

    /// Accepts the next connection the guest opens to host port `host_port` (the port listens
    /// from the first call on). operation_aborted if the VM stops first or on cancellation.
    template <boost::asio::completion_token_for<void(error_code, vsock_stream)> Token>
    auto async_vsock_accept(std::uint32_t host_port, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, vsock_stream)>(
            [this, host_port](auto handler) { initiate_vsock_accept(host_port, std::move(handler)); }, token);
    }

private:
    using stream_handler = boost::asio::any_completion_handler<void(error_code, vsock_stream)>;
    void initiate_vsock_connect(std::uint32_t guest_port, stream_handler handler);
    void initiate_vsock_accept(std::uint32_t host_port, stream_handler handler);
    using void_handler = boost::asio::any_completion_handler<void(error_code)>;
    void initiate_boot(void_handler handler);
    void initiate_restore(microvm_snapshot snapshot, void_handler handler);
    void initiate_prepare(void_handler handler);
    void initiate_snapshot(boost::asio::any_completion_handler<void(error_code, microvm_snapshot)> handler);
    void initiate_pause(void_handler handler);
    void initiate_resume(void_handler handler);
    void initiate_stop(void_handler handler);
    void initiate_wait_stopped(boost::asio::any_completion_handler<void(error_code, vm_stop_info)> handler);
    void initiate_wait_console(std::string text, void_handler handler);

    std::shared_ptr<detail::machine> machine_;
};

}  // namespace mimobox::vm
