// One operation's conversation with the guest agent: a connection with the request sent, the
// host's deadline for it (agent_watchdog), and the reader of the agent's framed answer. Every
// sandbox operation talks to the agent through one; only what to send and what to keep of the
// answer differs between them.
//
// Strand only. Not movable: the watchdog holds the stream's address. Destroying it hangs up,
// which in the guest ends the operation (and kills an exec's command).
#pragma once

#include "agent/frame.hpp"
#include "agent/messages.hpp"
#include "agent/response_reader.hpp"
#include "sandbox/agent_watchdog.hpp"
#include "sandbox/sandbox_state.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <tuple>

namespace mimobox::vm::detail {

namespace asio = boost::asio;

class sandbox_state;
struct operation_cancel;

class agent_session {
public:
    using error_code = boost::system::error_code;

    explicit agent_session(std::shared_ptr<sandbox_state> st);
    agent_session(const agent_session&) = delete;
    agent_session& operator=(const agent_session&) = delete;

    /// Connects (a spare, or a new connection with refusals retried until `connect_deadline`)
    /// and sends `request`. A connection that fails before the whole request went out cannot
    /// have started anything in the guest, so that case is retried on a fresh connection, up to
    /// unsent_request_retries times. A request larger than the connection's send buffer waits on
    /// the guest, under an agent_idle_timeout deadline.
    asio::awaitable<error_code> open(const agent::request& request, std::chrono::steady_clock::time_point connect_deadline);
    static constexpr int unsent_request_retries = 3;

    /// Reads one chunk from the agent into reader() (progress for the watchdog). Errors are
    /// classified (vm_stopped, agent_disconnected, agent_timeout, operation_aborted).
    asio::awaitable<error_code> read_some();
    /// Reads until the agent's response message. Data frames before it go to `on_data` (which
    /// may fail the call by returning an error); without one they are a protocol error.
    asio::awaitable<std::tuple<error_code, agent::response>> read_response(
        const std::function<error_code(agent::data_chunk&)>& on_data = {});

    struct frames_written {
        error_code ec;             ///< classified, except operation_aborted, which stays as is
        std::size_t bytes = 0;     ///< data bytes in frames that went out whole
        bool frame_cut = false;    ///< a cancellation stopped a frame part-way: the stream is out of step
    };
    /// Sends `data` as frames of `kind` (at most agent::max_data_chunk each), then, if `end`,
    /// the end-of-data frame. With `cancel`, a requested cancellation stops it between frames.
    asio::awaitable<frames_written> write_frames(agent::frame_kind kind, std::span<const std::uint8_t> data, bool end,
                                                 const operation_cancel* cancel = nullptr);
    /// Sends one encoded message (a kill request).
    asio::awaitable<error_code> write_message(const agent::request& request);

    vsock_stream& stream() noexcept { return stream_; }
    agent_watchdog& watchdog() noexcept { return watchdog_; }
    agent::response_reader& reader() noexcept { return reader_; }
    sandbox_state& sandbox() noexcept { return *st_; }
    /// The session no longer needs the VM running (an exec's command ended): see
    /// sandbox_config::idle_pause_after. Destroying the session does the same.
    void release_awake() noexcept { awake_.release(); }

private:
    std::shared_ptr<sandbox_state> st_;
    awake_lease awake_;  // taken by open(): the guest must run to answer
    vsock_stream stream_;
    agent_watchdog watchdog_;
    agent::response_reader reader_;
    // Not zero-filled: reads only ever expose what they wrote. Allocated on the first read.
    std::unique_ptr<std::uint8_t[]> read_buffer_;
};

/// How much one read from an agent connection takes at most (one agent data frame's worth).
inline constexpr std::size_t agent_read_chunk = 64 * 1024;

}  // namespace mimobox::vm::detail
