#include "vsock_host/vm_vsock_channel.hpp"

#include "vmm/machine.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

namespace mimobox::vm::detail {

namespace asio = boost::asio;

void vm_vsock_channel::close() {
    if (closed_) return;
    closed_ = true;
    if (auto m = vm_.lock())
        m->with_vsock([ep = ep_](vmm::vsock_host* h) {
            if (h) h->release(ep);
        });
}

template <class Buffers>
void vm_vsock_channel::start_io(Buffers buffers, io_handler handler, bool read) {
    auto vm = vm_.lock();
    if (!vm || closed_) {
        asio::post(strand_, asio::append(std::move(handler), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
        return;
    }
    const vsock::endpoint ep = ep_;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        slot.assign([weak = std::weak_ptr<machine>(vm), ep, read](asio::cancellation_type) {
            if (auto m = weak.lock())
                m->with_vsock([ep, read](vmm::vsock_host* h) {
                    if (h) h->cancel(ep, read);
                });
        });
    }
    vm->with_vsock([ep, buffers = std::move(buffers), h = std::move(handler), ex = strand_](vmm::vsock_host* host) mutable {
        if (!host)
            return asio::post(ex, asio::append(std::move(h), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
        if constexpr (std::is_same_v<Buffers, std::vector<asio::mutable_buffer>>) host->read(ep, std::move(buffers), std::move(h));
        else host->write(ep, std::move(buffers), std::move(h));
    });
}

void vm_vsock_channel::read(std::vector<asio::mutable_buffer> buffers, io_handler handler) {
    start_io(std::move(buffers), std::move(handler), true);
}

void vm_vsock_channel::write(std::vector<asio::const_buffer> buffers, io_handler handler) {
    start_io(std::move(buffers), std::move(handler), false);
}

void vm_vsock_channel::shutdown_write() {
    if (auto vm = vm_.lock())
        vm->with_vsock([ep = ep_](vmm::vsock_host* h) {
            if (h) h->shutdown_write(ep);
        });
}

}  // namespace mimobox::vm::detail
