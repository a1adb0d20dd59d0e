// One vsock stream connection between the host and a guest, as an Asio stream: it models
// AsyncReadStream and AsyncWriteStream, so asio::async_read/async_write and Beast work on it.
// It lives on its VM's strand; its handlers run on their associated executor (default: that
// strand).
//
// Reads complete with at least one byte, with asio::error::eof once the guest has shut down its
// sending side and everything it sent was read, or with a vsock_errc (reset, refused). Writes
// complete once at least one byte was accepted into the connection's bounded send buffer; the
// guest's credit decides how fast that drains, so a slow guest reader slows host writers, and a
// host that stops reading stops the guest's sender (its credit runs out).
//
// Cancellation: async_read_some and async_write_some support terminal per-operation
// cancellation (operation_aborted; the connection stays usable). Stopping the VM completes
// every pending operation with operation_aborted. Destroying the stream closes it.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace mimobox::vm {

namespace detail {
class vsock_channel;
}

class vsock_stream {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    vsock_stream() = default;
    explicit vsock_stream(std::shared_ptr<detail::vsock_channel> channel) noexcept : channel_(std::move(channel)) {}
    vsock_stream(vsock_stream&&) noexcept = default;
    vsock_stream& operator=(vsock_stream&& other) noexcept;
    ~vsock_stream();

    executor_type get_executor() const noexcept;
    bool is_open() const noexcept;
    std::uint32_t host_port() const noexcept;
    std::uint32_t guest_port() const noexcept;

    template <class MutableBufferSequence, boost::asio::completion_token_for<void(error_code, std::size_t)> Token>
    auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
        std::vector<boost::asio::mutable_buffer> bufs(boost::asio::buffer_sequence_begin(buffers),
                                                      boost::asio::buffer_sequence_end(buffers));
        return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, std::vector<boost::asio::mutable_buffer> b) { initiate_read(std::move(b), std::move(handler)); },
            token, std::move(bufs));
    }

    template <class ConstBufferSequence, boost::asio::completion_token_for<void(error_code, std::size_t)> Token>
    auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
        std::vector<boost::asio::const_buffer> bufs(boost::asio::buffer_sequence_begin(buffers),
                                                    boost::asio::buffer_sequence_end(buffers));
        return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, std::vector<boost::asio::const_buffer> b) { initiate_write(std::move(b), std::move(handler)); },
            token, std::move(bufs));
    }

    /// No more data from the host (the guest reads end of stream); reading stays possible.
    void shutdown_write();
    /// Graceful close: SHUTDOWN both ways; pending operations complete with operation_aborted.
    void close();

private:
    using io_handler = boost::asio::any_completion_handler<void(error_code, std::size_t)>;
    void initiate_read(std::vector<boost::asio::mutable_buffer> buffers, io_handler handler);
    void initiate_write(std::vector<boost::asio::const_buffer> buffers, io_handler handler);

    std::shared_ptr<detail::vsock_channel> channel_;
};

}  // namespace mimobox::vm
