// One exec's connection to the agent and its protocol state; shared by exec_stream (streamed
// output) and async_exec (collected output).
#pragma once

#include "mimobox/vm/exec_stream.hpp"
#include "sandbox/agent_session.hpp"
#include "sandbox/sandbox_state.hpp"

#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <utility>
#include <memory>

namespace mimobox::vm::detail {

class exec_stream_state {
public:
    exec_stream_state(std::shared_ptr<sandbox_state> sandbox, bool stdin_open)
        : sandbox(sandbox), session(std::move(sandbox)), stdin_open(stdin_open) {}

    std::shared_ptr<sandbox_state> sandbox;
    /// The exec's connection; its watchdog is armed when the exec has a timeout (the answer is
    /// due by then plus exec_timeout_grace).
    agent_session session;
    bool finished = false;  // the final event was delivered, or the connection failed
    /// A cancelled stdin write left a frame half-sent: the connection was hung up.
    bool broken = false;
    /// The final event is out (or the connection failed): ends the operation's connection.
    void finish();
    /// Hangs up after a half-sent frame (the agent kills the command); see `broken`.
    void break_stream();
    bool stdin_open;

    /// The writer role, held until destroyed (also when a cancellation throws out of a write).
    class writer_turn {
    public:
        explicit writer_turn(exec_stream_state* es) noexcept : es_(es) {}
        writer_turn(writer_turn&& other) noexcept : es_(std::exchange(other.es_, nullptr)) {}
        writer_turn& operator=(writer_turn&&) = delete;
        ~writer_turn() {
            if (es_) es_->release_writer();
        }

    private:
        exec_stream_state* es_;
    };
    /// Frames from concurrent writers must not interleave: one writer at a time, in order.
    asio::awaitable<writer_turn> acquire_writer();
    bool writer_busy() const noexcept { return writing_; }

private:
    void release_writer();

    bool writing_ = false;
    std::deque<std::shared_ptr<asio::steady_timer>> waiting_writers_;
};

/// Connects to the agent and sends `request`; the command is then running.
asio::awaitable<std::tuple<error_code, std::shared_ptr<exec_stream_state>>> open_exec(std::shared_ptr<sandbox_state> st,
                                                                                       agent::exec_request request);
/// The next event of `es` (see exec_stream::async_next).
asio::awaitable<std::tuple<error_code, stream_event>> next_event(std::shared_ptr<exec_stream_state> es);
struct operation_cancel;
/// Writes frames of stdin data (all of `data`, or up to a cancellation: see exec_stream.hpp),
/// then end-of-data if `close`. Completes with the count of data bytes sent.
asio::awaitable<std::tuple<error_code, std::size_t>> send_stdin(std::shared_ptr<exec_stream_state> es, std::string data,
                                                                bool close, std::shared_ptr<operation_cancel> cancel);
/// Runs a command to completion, feeding `stdin_data` and collecting output (async_exec).
asio::awaitable<std::tuple<error_code, guest_command_result>> run_collect(std::shared_ptr<sandbox_state> st,
                                                                          agent::exec_request request,
                                                                          std::optional<std::string> stdin_data);

}  // namespace mimobox::vm::detail

namespace mimobox::vm::detail {
/// The agent request for an exec (argv or shell) with `options`.
agent::exec_request make_exec_request(std::vector<std::string> argv, std::optional<std::string> shell,
                                      const guest_exec_options& options);
}  // namespace mimobox::vm::detail
