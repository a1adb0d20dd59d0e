// A host-side deadline for one agent connection. The guest is not trusted to answer: when the
// deadline passes, the watchdog closes the connection, so whatever the operation waits on
// (a read, a write the guest never drains) completes with operation_aborted, and fired()
// tells the operation to report sandbox_errc::agent_timeout instead.
// Two kinds of deadline: a fixed one (an exec: its timeout plus a grace period), and an idle
// limit that every sign of progress pushes back (file transfers: no byte either way for that
// long). Pushing it back costs no timer operation: the timer re-checks when it expires.
// Strand only: the timer, the stream and the operation share the sandbox's strand.
#pragma once

#include "mimobox/vm/vsock_stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>

namespace mimobox::vm::detail {

class agent_watchdog {
public:
    using clock = std::chrono::steady_clock;

    agent_watchdog() = default;  // unarmed
    agent_watchdog(const agent_watchdog&) = delete;
    agent_watchdog& operator=(const agent_watchdog&) = delete;
    /// Closes `stream` at `deadline`. `stream` must outlive the watchdog or disarm() first.
    void arm_at(boost::asio::any_io_executor strand, vsock_stream& stream, clock::time_point deadline);
    /// Closes `stream` once `idle` passes without progress().
    void arm_idle(boost::asio::any_io_executor strand, vsock_stream& stream, clock::duration idle);
    /// Bytes moved: an idle deadline starts again from now.
    void progress() noexcept;
    /// Stops watching; fired() keeps its value.
    void disarm() noexcept;
    /// Stops watching and forgets that it fired: unarmed, as new.
    void reset() noexcept {
        disarm();
        shared_.reset();
    }
    bool fired() const noexcept { return shared_ && shared_->fired; }
    ~agent_watchdog() { disarm(); }

private:
    struct shared {
        explicit shared(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
        boost::asio::steady_timer timer;
        vsock_stream* stream = nullptr;  // null once disarmed: a late expiry touches nothing
        clock::time_point deadline;
        std::optional<clock::duration> idle;
        bool fired = false;
    };
    static void wait(const std::shared_ptr<shared>& s);
    void arm(boost::asio::any_io_executor strand, vsock_stream& stream, clock::time_point deadline,
             std::optional<clock::duration> idle);
    std::shared_ptr<shared> shared_;
};

}  // namespace mimobox::vm::detail
