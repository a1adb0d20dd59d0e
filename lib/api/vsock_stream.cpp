#include "mimobox/vm/vsock_stream.hpp"

#include "api/vsock_channel.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

namespace mimobox::vm {

namespace asio = boost::asio;

vsock_stream& vsock_stream::operator=(vsock_stream&& other) noexcept {
    channel_ = std::move(other.channel_);
    return *this;
}

vsock_stream::~vsock_stream() = default;

vsock_stream::executor_type vsock_stream::get_executor() const noexcept {
    return channel_ ? channel_->executor() : executor_type(asio::system_executor());
}

bool vsock_stream::is_open() const noexcept { return channel_ && channel_->is_open(); }
std::uint32_t vsock_stream::host_port() const noexcept { return channel_ ? channel_->host_port() : 0; }
std::uint32_t vsock_stream::guest_port() const noexcept { return channel_ ? channel_->guest_port() : 0; }

void vsock_stream::initiate_read(std::vector<asio::mutable_buffer> buffers, io_handler handler) {
    if (!channel_)
        return asio::post(asio::system_executor(),
                          asio::append(std::move(handler), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
    channel_->read(std::move(buffers), std::move(handler));
}

void vsock_stream::initiate_write(std::vector<asio::const_buffer> buffers, io_handler handler) {
    if (!channel_)
        return asio::post(asio::system_executor(),
                          asio::append(std::move(handler), boost::system::error_code(asio::error::bad_descriptor), std::size_t{0}));
    channel_->write(std::move(buffers), std::move(handler));
}

void vsock_stream::shutdown_write() {
    if (channel_) channel_->shutdown_write();
}

void vsock_stream::close() {
    if (channel_) channel_->close();
}

}  // namespace mimobox::vm
