// File operations of microvm_sandbox: one agent connection each; data in 64 KiB frames.
#include "mimobox/vm/microvm_sandbox.hpp"

#include "mimobox/vm/error.hpp"
#include "sandbox/output_cap.hpp"
#include "sandbox/agent_session.hpp"
#include "sandbox/sandbox_state.hpp"
#include "sandbox/spawn_operation.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>


namespace mimobox::vm {

namespace detail {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using file_op = agent::file_request::operation;

// Checked here too, so a bad path fails fast with a typed error instead of a protocol error.
bool valid_guest_path(const std::string& p) {
    return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos && p.size() < 4096;
}

agent::file_request request_for(file_op op, std::string path) {
    agent::file_request f;
    f.op = op;
    f.path = std::move(path);
    return f;
}

guest_file_type type_of(agent::file_type t) { return static_cast<guest_file_type>(t); }

// Conversions live outside the coroutines: GCC 12 miscompiles braced aggregate initialization
// with std::string members inside coroutine bodies.
std::vector<guest_dir_entry> entries_of(agent::listing_response& l) {
    std::vector<guest_dir_entry> out;
    out.reserve(l.entries.size());
    for (auto& e : l.entries) out.push_back({std::move(e.name), type_of(e.type), e.size});
    return out;
}

guest_file_stat stat_of(const agent::stat_response& s) {
    return {type_of(s.type), s.size, s.mode, std::chrono::nanoseconds(s.mtime_ns)};
}

// The common shape: send one request, expect `ok` (or an error).
asio::awaitable<std::tuple<error_code>> simple_file_op(std::shared_ptr<sandbox_state> st, agent::file_request f) {
    if (!valid_guest_path(f.path) || (f.op == file_op::rename && !valid_guest_path(f.target)))
        co_return std::tuple{error_code(guest_file_errc::invalid_path)};
    auto [ec, r] = co_await call_agent(st, std::move(f));
    if (ec) co_return std::tuple{ec};
    if (std::holds_alternative<agent::ok_response>(r)) co_return std::tuple{error_code{}};
    co_return std::tuple{error_from_response(r, true)};
}

asio::awaitable<std::tuple<error_code, std::string>> read_file(std::shared_ptr<sandbox_state> st, std::string path) {
    if (!valid_guest_path(path)) co_return std::tuple{error_code(guest_file_errc::invalid_path), std::string()};
    if (auto ec = st->check_ready()) co_return std::tuple{ec, std::string()};
    agent_session session(st);
    if (auto ec = co_await session.open(request_for(file_op::read, std::move(path)), std::chrono::steady_clock::now() + agent_connect_patience))
        co_return std::tuple{ec, std::string()};
    session.watchdog().arm_idle(st->strand, session.stream(), st->config.agent_idle_timeout);
    std::string data;
    // The limit is the host's: the guest may send any amount, whatever the file's size.
    const std::uint64_t limit = st->config.max_read_file_bytes;
    auto [ec, r] = co_await session.read_response([&data, limit](agent::data_chunk& c) -> error_code {
        if (c.kind != agent::frame_kind::file_data) return sandbox_errc::agent_protocol;
        if (!fits_under_cap(data, c.bytes.size(), limit)) return guest_file_errc::file_too_large;
        data.append(c.bytes.begin(), c.bytes.end());
        return {};
    });
    if (ec) co_return std::tuple{ec, std::string()};  // the session hangs up: the agent stops sending
    if (!std::holds_alternative<agent::ok_response>(r)) co_return std::tuple{error_from_response(r, true), std::string()};
    co_return std::tuple{error_code{}, std::move(data)};
}

// Sends the data frames while reading the answer: the agent answers early (and hangs up) when
// it cannot write, and the answer is what the caller needs, not the broken send.
asio::awaitable<std::tuple<error_code>> write_file(std::shared_ptr<sandbox_state> st, std::string path, std::string data,
                                                   std::uint32_t mode) {
    using namespace asio::experimental::awaitable_operators;
    if (!valid_guest_path(path)) co_return std::tuple{error_code(guest_file_errc::invalid_path)};
    if (auto ec = st->check_ready()) co_return std::tuple{ec};
    auto rq = request_for(file_op::write, std::move(path));
    rq.mode = mode & 07777;
    agent_session session(st);
    if (auto ec = co_await session.open(rq, std::chrono::steady_clock::now() + agent_connect_patience)) co_return std::tuple{ec};
    // A guest that never reads what we send must not hold the write forever.
    session.watchdog().arm_idle(st->strand, session.stream(), st->config.agent_idle_timeout);
    auto send = [](agent_session& session, const std::string& data) -> asio::awaitable<void> {
        co_await session.write_frames(agent::frame_kind::file_data,
                                      std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()), true);
    };
    auto [ec, response] = co_await (send(session, data) && session.read_response());
    if (ec) co_return std::tuple{ec};
    if (std::holds_alternative<agent::ok_response>(response)) co_return std::tuple{error_code{}};
    co_return std::tuple{error_from_response(response, true)};
}

asio::awaitable<std::tuple<error_code, std::vector<guest_dir_entry>>> list_dir(std::shared_ptr<sandbox_state> st, std::string path) {
    if (!valid_guest_path(path)) co_return std::tuple{error_code(guest_file_errc::invalid_path), std::vector<guest_dir_entry>()};
    auto [ec, r] = co_await call_agent(st, request_for(file_op::list_dir, std::move(path)));
    if (ec) co_return std::tuple{ec, std::vector<guest_dir_entry>()};
    auto* l = std::get_if<agent::listing_response>(&r);
    if (!l) co_return std::tuple{error_from_response(r, true), std::vector<guest_dir_entry>()};
    co_return std::tuple{error_code{}, entries_of(*l)};
}

asio::awaitable<std::tuple<error_code, guest_file_stat>> stat(std::shared_ptr<sandbox_state> st, std::string path) {
    if (!valid_guest_path(path)) co_return std::tuple{error_code(guest_file_errc::invalid_path), guest_file_stat()};
    auto [ec, r] = co_await call_agent(st, request_for(file_op::stat, std::move(path)));
    if (ec) co_return std::tuple{ec, guest_file_stat()};
    auto* s = std::get_if<agent::stat_response>(&r);
    if (!s) co_return std::tuple{error_from_response(r, true), guest_file_stat()};
    co_return std::tuple{error_code{}, stat_of(*s)};
}

asio::awaitable<std::tuple<error_code, bool>> exists(std::shared_ptr<sandbox_state> st, std::string path) {
    auto [ec, s] = co_await stat(st, std::move(path));
    if (ec == guest_file_errc::not_found) co_return std::tuple{error_code{}, false};
    co_return std::tuple{ec, !ec};
}

}  // namespace

}  // namespace detail

void microvm_sandbox::initiate_read_file(std::string path, handler<std::string> h) {
    detail::spawn_operation(state_, detail::any_cancellation, detail::read_file(state_, std::move(path)), std::move(h));
}

void microvm_sandbox::initiate_write_file(std::string path, std::string data, std::uint32_t mode, handler<> h) {
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::write_file(state_, std::move(path), std::move(data), mode), std::move(h));
}

void microvm_sandbox::initiate_list_dir(std::string path, handler<std::vector<guest_dir_entry>> h) {
    detail::spawn_operation(state_, detail::any_cancellation, detail::list_dir(state_, std::move(path)), std::move(h));
}

void microvm_sandbox::initiate_stat(std::string path, handler<guest_file_stat> h) {
    detail::spawn_operation(state_, detail::any_cancellation, detail::stat(state_, std::move(path)), std::move(h));
}

void microvm_sandbox::initiate_exists(std::string path, handler<bool> h) {
    detail::spawn_operation(state_, detail::any_cancellation, detail::exists(state_, std::move(path)), std::move(h));
}

void microvm_sandbox::initiate_remove(std::string path, guest_remove_options options, handler<> h) {
    auto f = detail::request_for(detail::file_op::remove, std::move(path));
    f.recursive = options.recursive;
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::simple_file_op(state_, std::move(f)), std::move(h));
}

void microvm_sandbox::initiate_rename(std::string from, std::string to, handler<> h) {
    auto f = detail::request_for(detail::file_op::rename, std::move(from));
    f.target = std::move(to);
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::simple_file_op(state_, std::move(f)), std::move(h));
}

void microvm_sandbox::initiate_mkdir(std::string path, guest_mkdir_options options, handler<> h) {
    auto f = detail::request_for(detail::file_op::mkdir, std::move(path));
    f.recursive = options.parents;
    f.mode = options.mode & 07777;
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::simple_file_op(state_, std::move(f)), std::move(h));
}

}  // namespace mimobox::vm
