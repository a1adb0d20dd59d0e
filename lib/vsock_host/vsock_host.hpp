// The host end of a VM's vsock: the muxer, the link that carries its packets to the guest
// (virtio device or serial line, see packet_link.hpp) and the pending stream operations (connect,
// accept, read, write) it completes as packets move. Lives on the VM's strand; machine owns it.
#pragma once

#include "devices/bus.hpp"
#include "kvm/vm.hpp"
#include "memory/guest_memory.hpp"
#include "mimobox/vm/microvm_config.hpp"
#include "mimobox/vm/vsock_stream.hpp"
#include "vsock_host/packet_link.hpp"
#include "vsock/muxer.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include "vsock_host/vsock_clock.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <vector>

namespace mimobox::vmm {

class vsock_host {
public:
    using error_code = boost::system::error_code;
    using io_handler = boost::asio::any_completion_handler<void(error_code, std::size_t)>;
    using stream_handler = boost::asio::any_completion_handler<void(error_code, vm::vsock_stream)>;
    using stream_factory = std::function<vm::vsock_stream(const vsock::endpoint&)>;

    using link_factory = std::function<std::unique_ptr<packet_link>(vsock::muxer&)>;

    vsock_host(boost::asio::strand<boost::asio::any_io_executor> strand, const memory::guest_memory& memory,
               std::uint64_t guest_cid, vm::vsock_link kind, stream_factory make_stream);
    /// With a link of the caller's making (tests drive the host through a fake one).
    vsock_host(boost::asio::strand<boost::asio::any_io_executor> strand, std::uint64_t guest_cid,
               const link_factory& make_link, stream_factory make_stream);
    ~vsock_host();

    /// The link's device on its bus, its interrupt and doorbells with KVM.
    error_code attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) { return link_->attach(vm, pio, mmio); }
    /// Starts the link and the watchdogs; `keep_alive` is held by each worker until stop().
    void start(std::shared_ptr<void> keep_alive);
    /// Ends the workers and completes every pending operation with operation_aborted.
    void stop();
    /// The VM's vCPUs stopped for a pause, or run again. A paused guest cannot answer, so the
    /// lost-interrupt and stall watches sleep until the resume, which restarts the guest's
    /// quiet period (a pool's sandbox paused with its spare connects in flight would otherwise
    /// wake the host and log every second for as long as it stays paused).
    void set_paused(bool paused);
    /// The link's device state, for a snapshot (connections are not part of it: they end).
    error_code save(snapshot::state_writer& out) const { return link_->save(out); }
    /// Into a fresh host, before start().
    error_code restore(snapshot::state_reader& in) { return link_->restore(in); }
    /// After start() on a restored VM (packet_link::after_restore).
    void after_restore() {
        link_->after_restore();
        on_link_activity();
    }

    /// `id` names the wait for cancel_wait (unique per VM; taken by the initiating thread).
    void connect(std::uint32_t guest_port, std::uint64_t id, stream_handler h);
    void accept(std::uint32_t host_port, std::uint64_t id, stream_handler h);
    /// Completes connect or accept `id` with operation_aborted if it still waits (a connect's
    /// half-open connection is reset); nothing if it already completed.
    void cancel_wait(std::uint64_t id);
    void read(const vsock::endpoint& ep, std::vector<boost::asio::mutable_buffer> b, io_handler h);
    void write(const vsock::endpoint& ep, std::vector<boost::asio::const_buffer> b, io_handler h);
    void cancel(const vsock::endpoint& ep, bool read_side);
    void shutdown_write(const vsock::endpoint& ep);
    /// The stream is gone: close the connection and forget it once closed.
    void release(const vsock::endpoint& ep);

    /// A guest MMIO access the link can serve on the vCPU thread that made it (see
    /// packet_link::serve_on_vcpu_thread). Safe from any thread: the link is fixed at construction.
    bool serve_on_vcpu_thread(std::uint64_t addr, bool is_write, std::span<std::uint8_t> data) noexcept {
        return link_->serve_on_vcpu_thread(addr, is_write, data);
    }
    bool serve_port_on_vcpu_thread(std::uint16_t port, bool is_write, std::span<std::uint8_t> data) {
        return link_->serve_port_on_vcpu_thread(port, is_write, data);
    }
    /// Queues, connections, interrupt state and pending operations, for stall diagnostics.
    std::string describe() const;
    /// With MIMOBOX_VSOCK_STALL_LOG_S=N in the environment, an operation pending N seconds
    /// with no queue activity writes describe() to stderr (once per stall).
    static std::chrono::seconds stall_log_interval();
    /// How long an interrupt the link held back may wait for a later one to carry it.
    static constexpr std::chrono::milliseconds owed_interrupt_delay{200};
    /// How long operations may wait on a guest that moves nothing before its interrupt is
    /// raised again (see lost_interrupt_watch).
    static constexpr std::chrono::milliseconds quiet_guest_limit{1000};

private:
    struct pending_io {
        std::vector<boost::asio::mutable_buffer> read_buffers;
        std::optional<io_handler> reader;
        std::vector<boost::asio::const_buffer> write_buffers;
        std::optional<io_handler> writer;
    };
    using key = std::pair<std::uint32_t, std::uint32_t>;
    static key key_of(const vsock::endpoint& ep) { return {ep.host_port, ep.guest_port}; }

    void on_link_activity();
    boost::asio::awaitable<void> stall_watch(std::chrono::seconds interval, std::shared_ptr<void> keep_alive);
    boost::asio::awaitable<void> lost_interrupt_watch(std::shared_ptr<void> keep_alive);
    /// Raises the guest's interrupt again through the link; counts it in `count` and, with the
    /// stall log on, says why.
    void reraise_interrupt(std::uint64_t& count, const std::string& why);
    boost::asio::awaitable<void> owed_interrupt_watch(std::shared_ptr<void> keep_alive);
    bool has_pending_operations() const;
    /// Moves packets both ways, then completes what can complete; repeats while that helps.
    void pump();
    /// pump() once the operations already queued on the strand have run. Host-side requests
    /// (a close, the next connect, a write) often come in a burst; pumped together, they reach
    /// the guest in one interrupt instead of one each, and every guest interrupt is expensive.
    void schedule_pump();
    /// Output that may wait for the next pump (closes the guest already made): it rides with
    /// the next exchange, or goes out owed_interrupt_delay after it was queued, whichever is first.
    void defer_pump();
    /// When the owed-interrupt watch must next act: the earliest of an owed interrupt's, a
    /// deferred output's and a closing connection's (muxer::close_timeout) deadlines.
    std::optional<std::chrono::steady_clock::time_point> next_deadline() const;
    /// Arms the owed-interrupt timer for a debt or deferral that began at `since`.
    void arm_watch(std::chrono::steady_clock::time_point since);
    /// Arms it for `due` unless it is already armed for sooner.
    void arm_at(std::chrono::steady_clock::time_point due);
    bool progress();
    /// Arms the lost-interrupt watch when it sleeps and there is something to watch for.
    void arm_lost_interrupt_watch();
    template <class Handler, class... Args>
    void complete(Handler handler, Args... args);

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    stream_factory make_stream_;
    vsock::muxer muxer_;
    std::unique_ptr<packet_link> link_;
    bool stopped_ = false;
    bool paused_ = false;
    bool pump_scheduled_ = false;
    std::weak_ptr<void> owner_;  // the machine, from start(): a scheduled pump must not outlive it
    std::optional<vsock_timer> stall_timer_;
    // Armed while packets wait and the guest has no receive buffer posted, or while operations
    // wait on the guest (see lost_interrupt_watch).
    std::optional<vsock_timer> lost_interrupt_timer_;
    // Armed once the link holds back an interrupt, and left armed when another interrupt carries
    // it (see owed_interrupt_watch): re-arming and cancelling it on every exchange cost more
    // host time than the rare spurious expiry.
    std::optional<vsock_timer> owed_interrupt_timer_;
    std::optional<std::chrono::steady_clock::time_point> owed_since_;  // while an interrupt is owed
    std::optional<std::chrono::steady_clock::time_point> deferred_since_;  // while defer_pump's output waits
    std::uint64_t renotifications_ = 0, quiet_renotifications_ = 0;
    std::uint64_t bytes_moved_at_check_ = 0;
    std::chrono::steady_clock::time_point last_activity_ = vsock_clock::now();

    struct stream_waiter {
        std::uint64_t id;
        stream_handler handler;
    };
    std::map<key, std::list<stream_waiter>> connecting_;  // by host-side endpoint
    std::map<std::uint32_t, std::list<stream_waiter>> accepting_;
    std::map<key, pending_io> io_;
    std::map<key, bool> attached_;  // endpoints that have a live vsock_stream
};

}  // namespace mimobox::vmm
