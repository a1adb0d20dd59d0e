// What a vsock_stream talks to: one connection, wherever it is carried. The VM's vsock device
// (vsock_host/vm_vsock_channel) in production; a socket in the sandbox layer's unit tests
// (test/support/socket_vsock_channel.hpp), which run the real guest agent on the other end.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <vector>

namespace mimobox::vm::detail {

class vsock_channel {
public:
    using io_handler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

    vsock_channel() = default;
    vsock_channel(const vsock_channel&) = delete;
    vsock_channel& operator=(const vsock_channel&) = delete;
    virtual ~vsock_channel() = default;

    virtual boost::asio::any_io_executor executor() const = 0;
    virtual bool is_open() const = 0;
    virtual std::uint32_t host_port() const = 0;
    virtual std::uint32_t guest_port() const = 0;
    /// vsock_stream's contract (vsock_stream.hpp): at least one byte, eof, or a vsock_errc;
    /// the handler's cancellation slot is honoured; completion through the handler's executor.
    virtual void read(std::vector<boost::asio::mutable_buffer> buffers, io_handler handler) = 0;
    virtual void write(std::vector<boost::asio::const_buffer> buffers, io_handler handler) = 0;
    virtual void shutdown_write() = 0;
    /// Graceful close, once; later calls do nothing.
    virtual void close() = 0;
};

}  // namespace mimobox::vm::detail
