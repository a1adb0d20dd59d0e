#include "vmm/virtio_vsock_link.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/eventfd.h>

namespace mimobox::vmm {

namespace asio = boost::asio;

virtio_vsock_link::virtio_vsock_link(asio::strand<asio::any_io_executor> strand, const memory::guest_memory& memory,
                                     vsock::muxer& mux)
    : strand_(std::move(strand)), device_(memory, mux), transport_(device_, memory, irq_) {
    device_.attach(transport_);
}

virtio_vsock_link::error_code virtio_vsock_link::attach(kvm::vm& vm, devices::bus&, devices::bus& mmio) {
    constexpr std::uint64_t queue_notify = 0x50;
    irq_.connect(vm, gsi);
    if (!mmio.add(mmio_base, mmio_size, transport_)) return error_code(EEXIST, boost::system::system_category());
    for (std::uint32_t q = 0; q < device_.queue_count(); ++q) {
        kvm::unique_fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!fd) return error_code(errno, boost::system::system_category());
        // The guest's QueueNotify write of `q` now signals this eventfd inside KVM.
        if (auto ec = vm.assign_ioeventfd(fd.get(), mmio_base + queue_notify, 4, q)) return ec;
        queue_events_.emplace_back(strand_, fd.release());
    }
    return {};
}

void virtio_vsock_link::start(std::function<void()> on_activity, std::shared_ptr<void> keep_alive) {
    on_activity_ = std::move(on_activity);
    for (std::size_t i = 0; i < queue_events_.size(); ++i)
        asio::co_spawn(strand_, queue_worker(i, keep_alive), asio::detached);
}

void virtio_vsock_link::stop() {
    stopped_ = true;
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

std::string virtio_vsock_link::describe() const {
    return device_.describe() + "  transport interrupt_status=" + std::to_string(transport_.interrupt_status()) +
           " device_status=" + std::to_string(transport_.device_status()) + " edges=" +
           std::to_string(transport_.edges_raised()) + " status_reads=" + std::to_string(transport_.status_reads()) + "\n";
}

}  // namespace mimobox::vmm
