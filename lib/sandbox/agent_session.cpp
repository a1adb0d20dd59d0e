#include "sandbox/agent_session.hpp"

#include "mimobox/vm/error.hpp"
#include "sandbox/sandbox_state.hpp"
#include "sandbox/spawn_operation.hpp"
#include "vsock/connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>

namespace mimobox::vm::detail {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

agent_session::agent_session(std::shared_ptr<sandbox_state> st) : st_(std::move(st)) {}

asio::awaitable<boost::system::error_code> agent_session::open(const agent::request& request,
                                                               std::chrono::steady_clock::time_point connect_deadline) {
    if (!awake_.held()) {
        auto [aec, lease] = co_await st_->hold_awake();  // an idle-paused VM resumes first
        if (aec) co_return aec;
        awake_ = std::move(lease);
    }
    std::vector<std::uint8_t> encoded;
    agent::encode_request(encoded, request);
    for (int attempt = 0;; ++attempt) {
        auto [cec, s] = co_await st_->connect_agent(connect_deadline);
        if (cec) co_return cec;
        stream_ = std::move(s);
        // A request that fits the fresh connection's send buffer is taken at once, whatever the
        // guest does; only a larger one waits on the guest's credit and needs a deadline.
        if (encoded.size() > vsock::connection::tx_capacity) watchdog_.arm_idle(st_->strand, stream_, st_->config.agent_idle_timeout);
        auto [wec, n] = co_await asio::async_write(stream_, asio::buffer(encoded), use_tuple);
        watchdog_.disarm();
        if (!wec) co_return error_code{};
        const auto why = st_->classify(wec, watchdog_);
        watchdog_.reset();
        stream_ = vsock_stream();
        // Not all of it reached the guest: the agent cannot have acted on a partial frame.
        if (why != sandbox_errc::agent_disconnected || attempt == unsent_request_retries) co_return why;
    }
}

asio::awaitable<boost::system::error_code> agent_session::read_some() {
    if (!read_buffer_) read_buffer_ = std::make_unique_for_overwrite<std::uint8_t[]>(agent_read_chunk);
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(read_buffer_.get(), agent_read_chunk), use_tuple);
    if (ec) co_return st_->classify(ec, watchdog_);
    watchdog_.progress();
    reader_.feed(std::span(read_buffer_.get(), n));  // before the yield: a cancellation there must not lose bytes
    if (st_->refill_spares()) co_await asio::post(st_->strand, asio::use_awaitable);  // see refill_spares
    co_return error_code{};
}

asio::awaitable<std::tuple<boost::system::error_code, agent::response>> agent_session::read_response(
    const std::function<error_code(agent::data_chunk&)>& on_data) {
    for (;;) {
        auto item = reader_.next();
        if (!item) co_return std::tuple{error_code(sandbox_errc::agent_protocol), agent::response()};
        if (*item) {
            if (auto* r = std::get_if<agent::response>(&**item)) co_return std::tuple{error_code{}, std::move(*r)};
            if (auto* d = std::get_if<agent::data_chunk>(&**item)) {
                if (!on_data) co_return std::tuple{error_code(sandbox_errc::agent_protocol), agent::response()};
                if (auto ec = on_data(*d)) co_return std::tuple{ec, agent::response()};
            }
            continue;  // data_end: the response follows
        }
        if (auto ec = co_await read_some()) co_return std::tuple{ec, agent::response()};
    }
}

asio::awaitable<agent_session::frames_written> agent_session::write_frames(agent::frame_kind kind,
                                                                           std::span<const std::uint8_t> data, bool end,
                                                                           const operation_cancel* cancel) {
    frames_written out;
    // Frame by frame, straight from `data`: a large write is never copied whole.
    while (out.bytes < data.size()) {
        // A cancellation that waits for a frame boundary stops here: the stream stays in step.
        if (cancel && cancel->requested != asio::cancellation_type::none) {
            out.ec = asio::error::operation_aborted;
            co_return out;
        }
        watchdog_.progress();
        const std::size_t n = std::min<std::size_t>(data.size() - out.bytes, agent::max_data_chunk);
        const auto header = agent::frame_header(kind, n);
        const std::array<asio::const_buffer, 2> frame{asio::buffer(header), asio::buffer(data.data() + out.bytes, n)};
        auto [ec, w] = co_await asio::async_write(stream_, frame, use_tuple);
        if (w == header.size() + n) out.bytes += n;
        if (ec) {
            // A frame goes whole or not at all; anything in between leaves the stream out of step.
            out.frame_cut = w > 0 && w < header.size() + n;
            out.ec = ec == asio::error::operation_aborted ? ec : st_->classify(ec, watchdog_);
            co_return out;
        }
    }
    if (end) {
        watchdog_.progress();
        std::vector<std::uint8_t> frame;
        agent::encode_end(frame, kind);
        auto [ec, w] = co_await asio::async_write(stream_, asio::buffer(frame), use_tuple);
        if (ec) {
            out.frame_cut = w > 0 && w < frame.size();
            out.ec = ec == asio::error::operation_aborted ? ec : st_->classify(ec, watchdog_);
        }
    }
    co_return out;
}

asio::awaitable<boost::system::error_code> agent_session::write_message(const agent::request& request) {
    std::vector<std::uint8_t> encoded;
    agent::encode_request(encoded, request);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(encoded), use_tuple);
    co_return st_->classify(ec, watchdog_);
}

}  // namespace mimobox::vm::detail
