#include "vsock_host/virtio_vsock_link.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/eventfd.h>

#include <utility>

namespace mimobox::vmm {

namespace asio = boost::asio;

virtio_vsock_link::virtio_vsock_link(asio::strand<asio::any_io_executor> strand, const memory::guest_memory& memory,
                                     vsock::muxer& mux, vm::vsock_link bus)
    : strand_(std::move(strand)), device_(memory, mux) {
    if (bus == vm::vsock_link::virtio_mmio) {
        device_.attach(mmio_.emplace(device_, memory, irq_));
    } else {
        device_.attach(pci_.emplace(device_, memory, msi_, pci_placement));
        pci_host_.add(pci_slot, *pci_);
    }
}

virtio_vsock_link::error_code virtio_vsock_link::add_queue_event(const std::function<error_code(int)>& assign) {
    kvm::unique_fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) return error_code(errno, boost::system::system_category());
    if (auto ec = assign(fd.get())) return ec;
    queue_events_.emplace_back(strand_, fd.release());
    return {};
}

virtio_vsock_link::error_code virtio_vsock_link::attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) {
    const auto taken = error_code(EEXIST, boost::system::system_category());
    if (mmio_) {
        constexpr std::uint64_t queue_notify = 0x50;
        irq_.connect(vm, gsi);
        if (!mmio.add(mmio_base, mmio_size, *mmio_)) return taken;
        for (std::uint32_t q = 0; q < device_.queue_count(); ++q) {
            // The guest's QueueNotify write of `q` now signals this eventfd inside KVM.
            if (auto ec = add_queue_event([&](int fd) { return vm.assign_ioeventfd(fd, mmio_base + queue_notify, 4, q); }))
                return ec;
        }
        return {};
    }
    msi_.connect(vm);
    if (!pio.add(devices::pci_host::port_base, devices::pci_host::port_count, pci_host_) ||
        !mmio.add(pci_placement.registers, virtio::pci_transport::registers_size, pci_->registers()) ||
        !pio.add(pci_placement.notify, virtio::pci_transport::notify_ports, pci_->notifications()))
        return taken;
    for (std::uint32_t q = 0; q < device_.queue_count(); ++q) {
        // A 16-bit write of `q` to the queue's port signals this eventfd inside KVM.
        if (auto ec = add_queue_event([&](int fd) { return vm.assign_port_ioeventfd(fd, pci_->notify_port(q), 2, q); }))
            return ec;
    }
    return {};
}

void virtio_vsock_link::start(std::function<void()> on_activity, std::shared_ptr<void> keep_alive) {
    on_activity_ = std::move(on_activity);
    owner_ = keep_alive;
    // A device activation that stopped at its bound continues in a later turn of the strand,
    // so other VMs' work on this thread runs in between (and stop() can).
    device_.on_more_work([this, owner = std::weak_ptr<void>(keep_alive)] {
        if (std::exchange(more_work_posted_, true)) return;
        asio::post(strand_, [this, owner] {
            auto alive = owner.lock();  // the machine owns us: alive means we are too
            if (!alive) return;
            more_work_posted_ = false;
            if (!stopped_) on_activity_();
        });
    });
    for (std::size_t i = 0; i < queue_events_.size(); ++i)
        asio::co_spawn(strand_, queue_worker(i, keep_alive), asio::detached);
}

void virtio_vsock_link::stop() {
    stopped_ = true;
    if (reset_ack_timer_) reset_ack_timer_->cancel();
    for (auto& ev : queue_events_) {
        error_code ignored;
        ev.close(ignored);
    }
}

// keep_alive is only held: the coroutine frame owns it, so the machine outlives the worker.
asio::awaitable<void> virtio_vsock_link::queue_worker(std::size_t index, [[maybe_unused]] std::shared_ptr<void> keep_alive) {
    std::uint64_t count = 0;
    for (;;) {
        auto [ec, n] = co_await queue_events_[index].async_read_some(asio::buffer(&count, sizeof count),
                                                                      asio::as_tuple(asio::use_awaitable));
        if (ec || stopped_) break;
        on_activity_();
    }
}

virtio_vsock_link::error_code virtio_vsock_link::save(snapshot::state_writer& out) const {
    out.boolean(pci_.has_value());
    if (mmio_) {
        mmio_->save(out);
    } else {
        pci_host_.save(out);
        pci_->save(out);
    }
    return {};
}

virtio_vsock_link::error_code virtio_vsock_link::restore(snapshot::state_reader& in) {
    if (in.boolean() != pci_.has_value()) return in.failed() ? in.error() : vm::snapshot_errc::shape_mismatch;
    if (mmio_) return mmio_->restore(in);
    if (auto ec = pci_host_.restore(in)) return ec;
    return pci_->restore(in);
}

void virtio_vsock_link::after_restore() {
    if (device_.send_transport_reset()) {
        // A guest that never reposts its event buffer must not keep our packets forever.
        reset_ack_timer_.emplace(strand_, reset_ack_limit);
        reset_ack_timer_->async_wait([this, owner = owner_](error_code ec) {
            auto alive = owner.lock();  // the machine owns us: alive means we are too
            if (ec || !alive || stopped_ || !device_.waiting_for_reset_ack()) return;
            device_.end_reset_wait();
            on_activity_();
        });
    }
    device_.process();  // buffers the guest queued before the capture, and its unheard kicks
    if (pci_) pci_->deliver_pending();
    else mmio_->resignal_used_buffers();
}

std::string virtio_vsock_link::describe() const {
    if (mmio_)
        return device_.describe() + "  virtio-mmio interrupt_status=" + std::to_string(mmio_->interrupt_status()) +
               " device_status=" + std::to_string(mmio_->device_status()) + " edges=" +
               std::to_string(mmio_->edges_raised()) + " status_reads=" + std::to_string(mmio_->status_reads()) + "\n";
    return device_.describe() + "  virtio-pci device_status=" + std::to_string(pci_->device_status()) +
           " msix=" + (pci_->msix_enabled() ? "on" : "off") + " messages_sent=" + std::to_string(pci_->messages_sent()) +
           " messages_held=" + std::to_string(pci_->messages_held()) + "\n";
}

}  // namespace mimobox::vmm
