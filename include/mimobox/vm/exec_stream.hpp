// A command running in the guest whose output is consumed as it is produced.
//
// Backpressure: output is read from the guest only while async_next is waiting. A consumer that
// stops calling it stops the guest: the vsock receive buffer (256 KiB) fills, the agent's sends
// block on vsock credit, the command's pipe fills and the command blocks in write(). Host memory
// per stream stays bounded by that buffer, one 64 KiB read buffer and one frame (at most 1 MiB).
//
// Threading: operations run on the owning sandbox's strand; handlers run on their associated
// executor (the sandbox's executor when they have none). One async_next at a time; stdin writes,
// close and kill are queued in order. Destroying the stream hangs up, which kills the command's
// process group in the guest.
//
// Every operation requires is_open() (a default-constructed or moved-from stream has no command).
//
// Cancellation (per operation; the types each honours, and what it leaves):
// - async_next: terminal, partial and total. It completes with operation_aborted; nothing is
//   lost (bytes already read stay for the next call) and the stream stays usable.
// - async_write_stdin: partial stops at the next frame boundary (every 64 KiB): it completes
//   with operation_aborted and the count of bytes sent, the stream stays usable and the next
//   write continues the command's input exactly there. Terminal stops at once: if that leaves
//   a frame half-sent, the stream hangs up (which kills the command) and every later operation
//   reports sandbox_errc::stream_broken; otherwise it is as for partial. Total is not honoured.
// - async_close_stdin and async_kill are not cancellable (a cancellation is ignored).
#pragma once

#include "mimobox/vm/guest_exec.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace mimobox::vm {

namespace detail {
class exec_stream_state;
}

class exec_stream {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    exec_stream() = default;
    explicit exec_stream(std::shared_ptr<detail::exec_stream_state> state) noexcept : state_(std::move(state)) {}
    exec_stream(exec_stream&&) noexcept = default;
    exec_stream& operator=(exec_stream&&) noexcept;
    ~exec_stream();

    bool is_open() const noexcept { return state_ != nullptr; }
    executor_type get_executor() const noexcept;

    /// The next stdout/stderr chunk, then one final exit or timed_out event; after that,
    /// asio::error::eof. sandbox_errc::agent_disconnected if the agent's connection ends first,
    /// sandbox_errc::vm_stopped if the VM stops.
    template <boost::asio::completion_token_for<void(error_code, stream_event)> Token>
    auto async_next(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, stream_event)>(
            [this](auto handler) { initiate_next(std::move(handler)); }, token);
    }

    /// Sends bytes to the command's stdin (needs guest_exec_options::open_stdin). Completes once
    /// the bytes are handed to the guest's connection, which may wait for the command to read,
    /// with the number of bytes sent (all of them, unless it failed or was cancelled).
    /// sandbox_errc::stdin_closed once stdin was closed or the command's final event is out.
    template <boost::asio::completion_token_for<void(error_code, std::size_t)> Token>
    auto async_write_stdin(std::string data, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, std::string d) { initiate_write_stdin(std::move(d), std::move(handler)); }, token,
            std::move(data));
    }

    /// Closes the command's stdin (it reads end of file once the buffered bytes are consumed).
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_close_stdin(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_close_stdin(std::move(handler)); }, token);
    }

    /// Kills the command's process group; its exit event (signal 9) still arrives through
    /// async_next. If a stdin write is blocked, the stream hangs up instead: the command is
    /// killed the same way but async_next then ends with agent_disconnected. After the final
    /// event there is nothing to kill, and this succeeds at once. A kill that reaches the guest
    /// in the first 20 ms of a command without open stdin takes effect at the end of those
    /// 20 ms (the agent reads the connection only then; a hang-up it sees at once).
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_kill(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_kill(std::move(handler)); }, token);
    }

private:
    using event_handler = boost::asio::any_completion_handler<void(error_code, stream_event)>;
    using void_handler = boost::asio::any_completion_handler<void(error_code)>;
    using write_handler = boost::asio::any_completion_handler<void(error_code, std::size_t)>;
    void initiate_next(event_handler handler);
    void initiate_write_stdin(std::string data, write_handler handler);
    void initiate_close_stdin(void_handler handler);
    void initiate_kill(void_handler handler);

    std::shared_ptr<detail::exec_stream_state> state_;
};

}  // namespace mimobox::vm
