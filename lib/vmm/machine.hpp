// One microVM: KVM handles, guest memory, devices, vCPUs and their exit loops, all owned here
// and touched only on the VM's strand (the console log and the lifecycle state excepted, which
// any thread may read). kvm_backend is the public face; this is its implementation.
#pragma once

#include "boot/kernel_image.hpp"
#include "boot/zero_page.hpp"
#include "devices/bus.hpp"
#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "kvm/system.hpp"
#include "kvm/vcpu.hpp"
#include "kvm/vm.hpp"
#include "kvm/unique_fd.hpp"
#include "memory/guest_memory.hpp"
#include "snapshot/snapshot_data.hpp"
#include "mimobox/vm/kvm_exit_reason.hpp"
#include "mimobox/vm/kvm_lifecycle.hpp"
#include "mimobox/vm/microvm_config.hpp"
#include "mimobox/vm/microvm_snapshot.hpp"
#include "vmm/console_log.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vmm/vcpu_thread.hpp"
#include "vsock_host/vsock_host.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <vector>

namespace mimobox::vm::detail {

class machine : public std::enable_shared_from_this<machine> {
public:
    using error_code = boost::system::error_code;
    using void_handler = boost::asio::any_completion_handler<void(error_code)>;
    using stopped_handler = boost::asio::any_completion_handler<void(error_code, vm_stop_info)>;
    using snapshot_handler = boost::asio::any_completion_handler<void(error_code, microvm_snapshot)>;

    machine(boost::asio::any_io_executor executor, microvm_config config);
    ~machine();

    boost::asio::any_io_executor get_executor() const { return strand_; }
    const microvm_config& config() const noexcept { return config_; }
    kvm_lifecycle state() const noexcept { return state_.load(std::memory_order_acquire); }
    std::string console_output() const { return console_.contents(); }
    void set_console_callback(std::function<void(std::string_view)> cb) { console_callback_ = std::move(cb); }

    // Each posts to the strand and completes through the handler's associated executor.
    void boot(void_handler h);
    void pause(void_handler h);
    void resume(void_handler h);
    void stop(void_handler h);
    void wait_stopped(stopped_handler h);
    void wait_console(std::string text, void_handler h);
    /// Captures a paused VM (lifecycle_errc::invalid_state otherwise); machine_snapshot.cpp.
    void snapshot(snapshot_handler h);
    /// Instead of boot(): a VM built from `snap` and running where it was captured.
    void restore(std::shared_ptr<const snapshot_data> snap, void_handler h);
    /// Builds a shell ahead of restore(): KVM VM, devices and vCPUs, no memory, no guest state,
    /// no thread. State stays `created`; restore() then only maps memory and sets state.
    void prepare(void_handler h);
    /// From the backend's destructor: stop without anyone waiting.
    void request_stop();

    /// Runs `fn(vsock_host*)` on the strand: at once when the caller is already on it (a sandbox
    /// coroutine), else posted. The pointer is null when the VM has no vsock device (never
    /// booted, or its boot failed). A stopped VM's vsock_host aborts what it gets. Running at
    /// once is safe because vsock_host never calls out while its state is mid-change: every
    /// completion it makes is posted (vsock_host::complete), so nothing of the caller's runs
    /// inside it and nothing can re-enter it from there.
    template <class Fn>
    void with_vsock(Fn fn) {
        if (strand_.running_in_this_thread()) return fn(usable_vsock());
        boost::asio::post(strand_, [self = shared_from_this(), fn = std::move(fn)]() mutable { fn(self->usable_vsock()); });
    }

private:
    vmm::vsock_host* usable_vsock() const { return vsock_ && state() != kvm_lifecycle::booting ? vsock_.get() : nullptr; }

    struct vcpu_slot {
        kvm::vcpu cpu;
        std::unique_ptr<vmm::vcpu_thread> thread;
        std::vector<kvm_cpuid_entry2> cpuid;  // as set: a snapshot records what the guest saw
    };
    struct console_waiter {
        std::uint64_t id;
        std::string text;
        std::uint64_t searched_to;
        void_handler handler;
    };
    struct stopped_waiter {
        std::uint64_t id;
        stopped_handler handler;
    };

    error_code build();                   // everything between validate and starting vCPUs
    // The parts of a build that a restore shares (machine_build.cpp).
    using backing_factory = std::function<boost::system::result<memory::mapping>(std::uint64_t file_offset, std::uint64_t size)>;
    error_code create_vm();
    error_code add_ram(const backing_factory& make_backing);
    error_code create_devices();
    error_code create_vcpus(const std::function<std::vector<kvm_cpuid_entry2>(unsigned)>& cpuid_for, bool boot);
    // machine_snapshot.cpp
    boost::system::result<std::shared_ptr<const snapshot_data>> capture();
    error_code build_restored(const snapshot_data& snap);
    error_code build_shell();
    void fail_build(const error_code& ec);
    error_code prepare_images();  // read, parse and place: no KVM needed
    error_code load_images();     // copy into guest memory
    void start_vcpus();

    boost::asio::awaitable<void> exit_loop(std::size_t index);
    bool handle_exit(std::size_t index, vmm::vcpu_exit& exit);  // false: this vCPU must stop
    void begin_stop(kvm_exit_reason reason, std::string detail);
    void kick_all();
    void on_loop_finished();
    void finish_stop();
    void on_console_byte(std::uint8_t byte);
    void check_console_waiters();
    void set_state(kvm_lifecycle s) { state_.store(s, std::memory_order_release); }
    /// Always through post, never inline inside an initiating function; the handler runs on
    /// its associated executor, or on this VM's strand when it has none.
    template <class Handler, class... Args>
    void complete(Handler handler, Args... args) {
        boost::asio::post(strand_, boost::asio::append(std::move(handler), std::move(args)...));
    }
    /// Wires `h`'s cancellation slot to remove waiter `id` from `Waiters` and complete it with
    /// operation_aborted followed by `abort_args`.
    template <auto Waiters, class Handler, class... AbortArgs>
    void cancel_waiter_on_signal(Handler& h, std::uint64_t id, AbortArgs... abort_args);

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    microvm_config config_;
    std::atomic<kvm_lifecycle> state_{kvm_lifecycle::created};

    std::optional<kvm::system> kvm_;
    std::optional<kvm::vm> vm_;
    memory::guest_memory memory_;
    std::uint64_t boot_entry_ = 0;
    struct prepared_images {
        std::vector<std::uint8_t> kernel_file;
        boot::kernel_image image;
        std::vector<std::uint8_t> initrd_file;
        boot::initrd_placement initrd;
        std::string cmdline;
    };
    std::optional<prepared_images> images_;
    std::vector<std::unique_ptr<vcpu_slot>> vcpus_;
    // The snapshot this VM was restored from: its memory file backs guest RAM (MAP_PRIVATE),
    // and a capture of this VM needs to know which of its ranges hold data.
    std::shared_ptr<const snapshot_data> restored_from_;
    bool shell_ready_ = false;  // prepare() built the VM's objects; restore() reuses them

    devices::bus pio_bus_;
    devices::bus mmio_bus_;
    std::unique_ptr<vmm::kvm_irq_line> serial_irq_;
    std::unique_ptr<devices::serial> serial_;
    std::unique_ptr<devices::i8042> i8042_;
    std::unique_ptr<vmm::vsock_host> vsock_;

    vmm::console_log console_;
    std::function<void(std::string_view)> console_callback_;
    std::string pending_console_;  // bytes since the last newline, flushed to the log per line

    std::size_t running_loops_ = 0;
    bool pause_requested_ = false;
    bool stop_requested_ = false;
    std::optional<vm_stop_info> stop_info_;
    std::vector<void_handler> pause_waiters_;
    std::vector<void_handler> stop_waiters_;
    std::list<console_waiter> console_waiters_;
    std::list<stopped_waiter> stopped_waiters_;
    std::atomic<std::uint64_t> next_waiter_id_{1};  // taken by initiating functions on any thread
};

}  // namespace mimobox::vm::detail
