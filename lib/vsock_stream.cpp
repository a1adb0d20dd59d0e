#include "mimobox/vm/vsock_stream.hpp"

#include "vmm/machine.hpp"
#include "vmm/vsock_channel.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

namespace mimobox::vm {

namespace asio = boost::asio;

namespace detail {
void vsock_channel::release() {
    if (closed) return;
    closed = true;
    if (auto m = vm_.lock())
        m->with_vsock([ep = ep_](vmm::vsock_host* h) {
            if (h) h->release(ep);
        });
}
}  // namespace detail

vsock_stream& vsock_stream::operator=(vsock_stream&& other) noexcept {
    channel_ = std::move(other.channel_);
    return *this;
}

vsock_stream::~vsock_stream() = default;

vsock_stream::executor_type vsock_stream::get_executor() const noexcept {
    return channel_ ? channel_->executor() : executor_type(asio::system_executor());
}

bool vsock_stream::is_open() const noexcept { return channel_ && !channel_->closed && !channel_->vm().expired(); }
std::uint32_t vsock_stream::host_port() const noexcept { return channel_ ? channel_->ends().host_port : 0; }
std::uint32_t vsock_stream::guest_port() const noexcept { return channel_ ? channel_->ends().guest_port : 0; }

namespace {
template <class Buffers>
void start_io(const std::shared_ptr<detail::vsock_channel>& channel, Buffers buffers,
              asio::any_completion_handler<void(boost::system::error_code, std::size_t)> handler, bool read) {
    auto vm = channel ? channel->vm().lock() : nullptr;
    if (!vm || channel->closed) {
        auto ex = channel ? channel->executor() : asio::any_io_executor(asio::system_executor());
        asio::post(ex, asio::append(std::move(handler), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
        return;
    }
    const vsock::endpoint ep = channel->ends();
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        slot.assign([weak = std::weak_ptr<detail::machine>(vm), ep, read](asio::cancellation_type) {
            if (auto m = weak.lock())
                m->with_vsock([ep, read](vmm::vsock_host* h) {
                    if (h) h->cancel(ep, read);
                });
        });
    }
    vm->with_vsock([ep, buffers = std::move(buffers), h = std::move(handler),
                    ex = channel->executor()](vmm::vsock_host* host) mutable {
        if (!host)
            return asio::post(ex, asio::append(std::move(h), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
        if constexpr (std::is_same_v<Buffers, std::vector<asio::mutable_buffer>>) host->read(ep, std::move(buffers), std::move(h));
        else host->write(ep, std::move(buffers), std::move(h));
    });
}
}  // namespace

void vsock_stream::initiate_read(std::vector<asio::mutable_buffer> buffers, io_handler handler) {
    start_io(channel_, std::move(buffers), std::move(handler), true);
}

void vsock_stream::initiate_write(std::vector<asio::const_buffer> buffers, io_handler handler) {
    start_io(channel_, std::move(buffers), std::move(handler), false);
}

void vsock_stream::shutdown_write() {
    if (!channel_) return;
    if (auto vm = channel_->vm().lock())
        vm->with_vsock([ep = channel_->ends()](vmm::vsock_host* h) {
            if (h) h->shutdown_write(ep);
        });
}

void vsock_stream::close() {
    if (channel_) channel_->release();
}

}  // namespace mimobox::vm
