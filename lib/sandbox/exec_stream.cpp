#include "mimobox/vm/exec_stream.hpp"

#include "mimobox/vm/error.hpp"
#include "sandbox/exec_stream_state.hpp"
#include "sandbox/output_cap.hpp"
#include "sandbox/spawn_operation.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/assert.hpp>

#include <array>

namespace mimobox::vm {

namespace detail {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

guest_command_result status_of(const agent::exit_response& x) {
    guest_command_result r;
    r.exit_code = x.exit_code;
    r.signal = x.signal;
    r.timed_out = x.timed_out;
    r.stdout_truncated = x.stdout_truncated;
    r.stderr_truncated = x.stderr_truncated;
    r.duration = std::chrono::microseconds(x.duration_us);
    return r;
}
}  // namespace

void exec_stream_state::finish() {
    if (finished) return;
    finished = true;
    session.watchdog().disarm();
    // Hang up now, not when the last owner lets go: an exec_stream may be kept long after.
    session.stream().close();
    session.release_awake();
}

void exec_stream_state::break_stream() {
    broken = true;
    session.watchdog().disarm();
    session.stream().close();
    session.release_awake();
}

asio::awaitable<exec_stream_state::writer_turn> exec_stream_state::acquire_writer() {
    if (!writing_) {
        writing_ = true;
        co_return writer_turn(this);
    }
    auto turn = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                     asio::steady_timer::time_point::max());
    waiting_writers_.push_back(turn);
    // A cancellation already pending throws from the co_await below before the wait starts:
    // then this waiter leaves the queue, so release_writer never hands the role to nobody.
    struct leave_queue {
        std::deque<std::shared_ptr<asio::steady_timer>>& queue;
        const std::shared_ptr<asio::steady_timer>& turn;
        bool handed = false;
        ~leave_queue() {
            if (!handed) std::erase(queue, turn);
        }
    } guard{waiting_writers_, turn};
    // Woken by release_writer, which hands the writer role over; the wait itself is not
    // cancellable, so the hand-over cannot be lost.
    co_await turn->async_wait(asio::bind_cancellation_slot(asio::cancellation_slot(), use_tuple));
    guard.handed = true;
    co_return writer_turn(this);
}

void exec_stream_state::release_writer() {
    if (waiting_writers_.empty()) {
        writing_ = false;
        return;
    }
    waiting_writers_.front()->cancel();
    waiting_writers_.pop_front();
}

asio::awaitable<std::tuple<error_code, std::shared_ptr<exec_stream_state>>> open_exec(std::shared_ptr<sandbox_state> st,
                                                                                       agent::exec_request request) {
    if (auto ec = st->check_ready()) co_return std::tuple{ec, std::shared_ptr<exec_stream_state>{}};
    if (request.timeout_ms > agent::max_timeout_ms)
        co_return std::tuple{make_error_code(boost::system::errc::invalid_argument), std::shared_ptr<exec_stream_state>{}};
    const auto started = std::chrono::steady_clock::now();
    const bool stdin_open = request.stdin_open;
    const auto timeout = std::chrono::milliseconds(request.timeout_ms);
    auto es = std::make_shared<exec_stream_state>(st, stdin_open);
    if (auto ec = co_await es->session.open(request, started + agent_connect_patience))
        co_return std::tuple{ec, std::shared_ptr<exec_stream_state>{}};
    // The guest enforces the timeout; the host does not rely on it.
    if (timeout.count() > 0)
        es->session.watchdog().arm_at(st->strand, es->session.stream(), started + timeout + st->config.exec_timeout_grace);
    co_return std::tuple{error_code{}, std::move(es)};
}

asio::awaitable<std::tuple<error_code, stream_event>> next_event(std::shared_ptr<exec_stream_state> es) {
    if (es->broken) co_return std::tuple{error_code(sandbox_errc::stream_broken), stream_event()};
    if (es->finished) co_return std::tuple{error_code(asio::error::eof), stream_event()};
    for (;;) {
        auto item = es->session.reader().next();
        if (!item) {
            es->finish();
            co_return std::tuple{error_code(sandbox_errc::agent_protocol), stream_event()};
        }
        if (*item) {
            if (auto* d = std::get_if<agent::data_chunk>(&**item)) {
                stream_event ev;
                if (d->kind == agent::frame_kind::stdout_data) ev.kind = stream_event_kind::stdout_data;
                else if (d->kind == agent::frame_kind::stderr_data) ev.kind = stream_event_kind::stderr_data;
                else co_return std::tuple{error_code(sandbox_errc::agent_protocol), stream_event()};
                ev.data.assign(d->bytes.begin(), d->bytes.end());
                co_return std::tuple{error_code{}, std::move(ev)};
            }
            if (auto* r = std::get_if<agent::response>(&**item)) {
                es->finish();
                if (auto* x = std::get_if<agent::exit_response>(r)) {
                    stream_event ev;
                    ev.status = status_of(*x);
                    ev.kind = x->timed_out ? stream_event_kind::timed_out : stream_event_kind::exit;
                    co_return std::tuple{error_code{}, std::move(ev)};
                }
                co_return std::tuple{error_from_response(*r, false), stream_event()};
            }
            continue;  // end of an output stream: the exit message follows
        }
        if (auto ec = co_await es->session.read_some()) {
            if (ec != asio::error::operation_aborted) es->finish();  // cancelled: still usable
            co_return std::tuple{ec, stream_event()};
        }
    }
}

asio::awaitable<std::tuple<error_code, std::size_t>> send_stdin(std::shared_ptr<exec_stream_state> es, std::string data,
                                                                bool close, std::shared_ptr<operation_cancel> cancel) {
    if (es->broken) co_return std::tuple{error_code(sandbox_errc::stream_broken), std::size_t{0}};
    // After the final event the command has exited, and its stdin with it.
    if (!es->stdin_open || es->finished) co_return std::tuple{error_code(sandbox_errc::stdin_closed), std::size_t{0}};
    if (close) es->stdin_open = false;
    auto turn = co_await es->acquire_writer();
    if (es->broken) co_return std::tuple{error_code(sandbox_errc::stream_broken), std::size_t{0}};  // by the writer before us
    auto written = co_await es->session.write_frames(
        agent::frame_kind::stdin_data, std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()), close,
        cancel.get());
    // Terminal cancellation may cut a frame: then hang up, never leave it half-written and reused.
    if (written.frame_cut) es->break_stream();
    co_return std::tuple{written.ec, written.bytes};
}

asio::awaitable<std::tuple<error_code>> close_stdin(std::shared_ptr<exec_stream_state> es) {
    auto [ec, n] = co_await send_stdin(std::move(es), std::string(), true, nullptr);
    co_return std::tuple{ec};
}

asio::awaitable<std::tuple<error_code>> send_kill(std::shared_ptr<exec_stream_state> es) {
    // It has exited, or the hang-up after a broken write killed it: nothing left to kill.
    if (es->finished || es->broken) co_return std::tuple{error_code{}};
    if (es->writer_busy()) {
        es->session.stream().close();  // a blocked stdin write would hold the kill back: hang up instead
        co_return std::tuple{error_code{}};
    }
    auto turn = co_await es->acquire_writer();
    if (es->broken) co_return std::tuple{error_code{}};
    co_return std::tuple{co_await es->session.write_message(agent::kill_request{})};
}

asio::awaitable<std::tuple<error_code, guest_command_result>> run_collect(std::shared_ptr<sandbox_state> st,
                                                                          agent::exec_request request,
                                                                          std::optional<std::string> stdin_data) {
    using namespace asio::experimental::awaitable_operators;
    request.stdin_open = stdin_data.has_value();
    // The guest caps each stream at max_output and flags the cut; the host enforces the same
    // cap itself, so a guest that ignores it costs host memory only up to it.
    const std::uint64_t cap = request.max_output;
    auto [ec, es] = co_await open_exec(st, std::move(request));
    if (ec) co_return std::tuple{ec, guest_command_result()};
    guest_command_result result;
    error_code failure;
    auto feed = [](std::shared_ptr<exec_stream_state> es, std::optional<std::string> data) -> asio::awaitable<void> {
        // Errors here surface through the output side (the connection is shared).
        if (data) co_await send_stdin(es, std::move(*data), true, nullptr);
    };
    auto collect = [](std::shared_ptr<exec_stream_state> es, guest_command_result& out, error_code& failure,
                      std::uint64_t cap) -> asio::awaitable<void> {
        bool out_cut = false, err_cut = false;
        for (;;) {
            auto [ec, ev] = co_await next_event(es);
            if (ec) {
                failure = ec;
                co_return;
            }
            switch (ev.kind) {
            case stream_event_kind::stdout_data: out_cut = append_capped(out.stdout_data, ev.data, cap) || out_cut; break;
            case stream_event_kind::stderr_data: err_cut = append_capped(out.stderr_data, ev.data, cap) || err_cut; break;
            case stream_event_kind::exit:
            case stream_event_kind::timed_out: {
                auto data_out = std::move(out.stdout_data);
                auto data_err = std::move(out.stderr_data);
                out = std::move(ev.status);
                out.stdout_data = std::move(data_out);
                out.stderr_data = std::move(data_err);
                out.stdout_truncated = out.stdout_truncated || out_cut;
                out.stderr_truncated = out.stderr_truncated || err_cut;
                co_return;
            }
            }
        }
    };
    // Without stdin there is nothing to run alongside collect: skip the parallel group.
    if (stdin_data) co_await (feed(es, std::move(stdin_data)) && collect(es, result, failure, cap));
    else co_await collect(es, result, failure, cap);
    // Dropping `es` hangs up: after a failure or cancellation that kills the command.
    if (failure) co_return std::tuple{failure, guest_command_result()};
    co_return std::tuple{error_code{}, std::move(result)};
}

}  // namespace detail

exec_stream& exec_stream::operator=(exec_stream&& other) noexcept {
    state_ = std::move(other.state_);
    return *this;
}

exec_stream::~exec_stream() = default;  // the last owner of the state closes the connection

exec_stream::executor_type exec_stream::get_executor() const noexcept { return state_->sandbox->strand; }

void exec_stream::initiate_next(event_handler handler) {
    BOOST_ASSERT(state_);  // precondition: is_open()
    detail::spawn_operation(state_->sandbox, detail::any_cancellation, detail::next_event(state_), std::move(handler));
}

void exec_stream::initiate_write_stdin(std::string data, write_handler handler) {
    BOOST_ASSERT(state_);  // precondition: is_open()
    // Terminal stops at once; partial at the next frame boundary (send_stdin polls for it).
    namespace asio = boost::asio;
    constexpr detail::cancel_policy policy{asio::cancellation_type::terminal | asio::cancellation_type::partial,
                                           asio::cancellation_type::terminal};
    auto cancel = std::make_shared<detail::operation_cancel>();
    detail::spawn_operation(state_->sandbox, policy, detail::send_stdin(state_, std::move(data), false, cancel),
                            std::move(handler), cancel);
}

void exec_stream::initiate_close_stdin(void_handler handler) {
    BOOST_ASSERT(state_);  // precondition: is_open()
    detail::spawn_operation(state_->sandbox, detail::not_cancellable, detail::close_stdin(state_), std::move(handler));
}

void exec_stream::initiate_kill(void_handler handler) {
    BOOST_ASSERT(state_);  // precondition: is_open()
    detail::spawn_operation(state_->sandbox, detail::not_cancellable, detail::send_kill(state_), std::move(handler));
}

}  // namespace mimobox::vm
