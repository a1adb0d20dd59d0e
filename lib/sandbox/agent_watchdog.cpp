#include "sandbox/agent_watchdog.hpp"

#include <new>

namespace mimobox::vm::detail {

void agent_watchdog::arm(boost::asio::any_io_executor strand, vsock_stream& stream, clock::time_point deadline,
                         std::optional<clock::duration> idle) {
    disarm();
    shared_ = std::make_shared<shared>(std::move(strand));
    shared_->stream = &stream;
    shared_->deadline = deadline;
    shared_->idle = idle;
    wait(shared_);
}

void agent_watchdog::arm_at(boost::asio::any_io_executor strand, vsock_stream& stream, clock::time_point deadline) {
    arm(std::move(strand), stream, deadline, std::nullopt);
}

void agent_watchdog::arm_idle(boost::asio::any_io_executor strand, vsock_stream& stream, clock::duration idle) {
    arm(std::move(strand), stream, clock::now() + idle, idle);
}

void agent_watchdog::wait(const std::shared_ptr<shared>& s) {
    s->timer.expires_at(s->deadline);
    s->timer.async_wait([s](boost::system::error_code ec) {
        if (ec || !s->stream) return;  // disarmed
        if (clock::now() < s->deadline) {
            // Progress pushed it back meanwhile. A plain handler must not throw out of
            // io_context::run: without memory to wait again, the deadline is now.
            try {
                return wait(s);
            } catch (const std::bad_alloc&) {
            }
        }
        s->fired = true;
        auto* stream = std::exchange(s->stream, nullptr);
        stream->close();  // pending reads and writes complete with operation_aborted
    });
}

void agent_watchdog::progress() noexcept {
    if (shared_ && shared_->idle) shared_->deadline = clock::now() + *shared_->idle;
}

void agent_watchdog::disarm() noexcept {
    if (!shared_ || !shared_->stream) return;
    shared_->stream = nullptr;
    shared_->timer.cancel();
}

}  // namespace mimobox::vm::detail
