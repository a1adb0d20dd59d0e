// The guest agent over vsock, driven by a minimal client written with the protocol codec
// (the public microvm_sandbox API builds on the same pieces).
#include "agent/messages.hpp"

#define BOOST_TEST_MODULE agent
#include <boost/test/unit_test.hpp>

#include "agent/frame.hpp"
#include "mimobox/vm/kvm_backend.hpp"
#include "vm_test_support.hpp"

#include <boost/asio/write.hpp>

using namespace mimobox;
using namespace mimobox::test;
using vm::kvm_backend;

namespace {

constexpr std::uint32_t agent_port = 52;

struct exec_outcome {
    std::string out, err;
    std::optional<agent::exit_response> exit;
    std::optional<agent::error_response> error;
};

asio::awaitable<void> send_frame(vm::vsock_stream& s, agent::frame_kind kind, std::span<const std::uint8_t> body) {
    std::vector<std::uint8_t> wire;
    agent::encode_frame(wire, kind, body);
    co_await asio::async_write(s, asio::buffer(wire), asio::use_awaitable);
}

asio::awaitable<exec_outcome> run(kvm_backend& vm, agent::request rq, std::string stdin_data = {}) {
    auto s = co_await vm.async_vsock_connect(agent_port, asio::use_awaitable);
    auto text = agent::serialize(agent::to_json(rq));
    co_await send_frame(s, agent::frame_kind::message, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    // stdin is written while output is read: a command like cat produces output as it
    // consumes input, and flow control stalls whichever side nobody drains.
    auto feed_stdin = [&]() -> asio::awaitable<void> {
        auto* e = std::get_if<agent::exec_request>(&rq);
        if (!e || !e->stdin_open) co_return;
        for (std::size_t off = 0; off < stdin_data.size(); off += agent::max_data_chunk) {
            auto n = std::min<std::size_t>(agent::max_data_chunk, stdin_data.size() - off);
            co_await send_frame(s, agent::frame_kind::stdin_data, std::span(reinterpret_cast<const std::uint8_t*>(stdin_data.data() + off), n));
        }
        std::uint8_t which = static_cast<std::uint8_t>(agent::frame_kind::stdin_data);
        co_await send_frame(s, agent::frame_kind::end_of_data, std::span(&which, 1));
    };
    exec_outcome o;
    auto collect = [&]() -> asio::awaitable<void> {
    agent::frame_decoder d;
    std::vector<std::uint8_t> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        if (ec) break;
        std::span<const std::uint8_t> in(buf.data(), n);
        while (!in.empty() && !d.error()) {
            auto used = d.feed(in);
            in = in.subspan(used);
            while (auto f = d.next()) {
                if (f->kind == agent::frame_kind::stdout_data) o.out.append(f->body.begin(), f->body.end());
                else if (f->kind == agent::frame_kind::stderr_data) o.err.append(f->body.begin(), f->body.end());
                else if (f->kind == agent::frame_kind::message) {
                    auto v = agent::parse_message(std::string_view(reinterpret_cast<const char*>(f->body.data()), f->body.size()));
                    BOOST_REQUIRE(v);
                    auto r = agent::response_from_json(*v);
                    BOOST_REQUIRE(r);
                    if (auto* x = std::get_if<agent::exit_response>(&*r)) o.exit = *x;
                    if (auto* e = std::get_if<agent::error_response>(&*r)) o.error = *e;
                }
            }
            if (used == 0) break;
        }
        if (o.exit || o.error) break;
    }
    };
    using namespace asio::experimental::awaitable_operators;
    co_await (feed_stdin() && collect());
    co_return o;
}

// Variadic rather than a braced list: GCC 12 miscompiles braced initializer lists of strings
// inside coroutines ("array used as initializer").
template <class... Args>
agent::exec_request argv(const Args&... a) {
    agent::exec_request e;
    (e.argv.emplace_back(a), ...);
    return e;
}

template <class Body>
void with_agent(Body body) {
    run_coroutine([&](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=agent", 2, 256));
        auto [ec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        auto wec = co_await wait_console(vm, "MIMOBOX_AGENT=listening");
        BOOST_REQUIRE_MESSAGE(!wec, "agent: " << wec.message() << "\nconsole:\n" << vm.console_output());
        co_await body(vm);
        co_await vm.async_stop(asio::use_awaitable);
    });
}

}  // namespace

BOOST_AUTO_TEST_CASE(agent_runs_commands_with_exit_codes_streams_env_cwd_and_raw_arguments) {
    with_agent([](kvm_backend& vm) -> asio::awaitable<void> {
        auto ping = co_await run(vm, agent::ping_request{});
        (void)ping;  // pong ends the connection without an exit message

        auto echo = co_await run(vm, argv("echo", "hello"));
        BOOST_REQUIRE(echo.exit);
        BOOST_TEST(echo.out == "hello\n");
        BOOST_TEST(echo.exit->exit_code == 0);

        agent::exec_request code124;
        code124.shell = "echo to-err >&2; exit 124";
        auto r124 = co_await run(vm, code124);
        BOOST_REQUIRE(r124.exit);
        BOOST_TEST(r124.exit->exit_code == 124);
        BOOST_TEST(!r124.exit->timed_out);  // 124 is just an exit code here
        BOOST_TEST(r124.err == "to-err\n");
        BOOST_TEST(r124.out.empty());

        auto env = argv("sh", "-c", "echo \"$GREETING\"; pwd");
        env.env["GREETING"] = "hi there";
        env.cwd = "/tmp";
        auto renv = co_await run(vm, env);
        BOOST_TEST(renv.out == "hi there\n/tmp\n");

        const std::string tricky = "line1\nline2 \"quoted\" 'single' $HOME \xff\xfe";
        auto raw = co_await run(vm, argv("printf", "%s", tricky));
        BOOST_TEST(raw.out == tricky);

        auto missing = co_await run(vm, argv("/no/such/program"));
        BOOST_REQUIRE(missing.exit);
        BOOST_TEST(missing.exit->exit_code == 127);
    });
}

BOOST_AUTO_TEST_CASE(agent_timeout_kills_the_process_group) {
    with_agent([](kvm_backend& vm) -> asio::awaitable<void> {
        agent::exec_request e;
        e.shell = "sleep 1000 & sleep 1000; echo never";
        e.timeout_ms = 500;
        auto r = co_await run(vm, e);
        BOOST_REQUIRE(r.exit);
        BOOST_TEST(r.exit->timed_out);
        BOOST_TEST(r.exit->signal == 9);
        BOOST_TEST(r.out.empty());
        // The background sleep was in the same process group: nothing named sleep is left.
        auto ps = co_await run(vm, argv("sh", "-c", "ps | grep -c '[s]leep 1000'"));
        BOOST_TEST(ps.out == "0\n");
    });
}

BOOST_AUTO_TEST_CASE(agent_streams_one_mib_of_stdin_through_cat) {
    with_agent([](kvm_backend& vm) -> asio::awaitable<void> {
        std::string input(1u << 20, '\0');
        for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>(i * 13 + 7);
        auto e = argv("cat");
        e.stdin_open = true;
        auto r = co_await run(vm, e, input);
        BOOST_REQUIRE(r.exit);
        BOOST_TEST(r.exit->exit_code == 0);
        BOOST_TEST(r.out.size() == input.size());
        BOOST_TEST((r.out == input));
    });
}

BOOST_AUTO_TEST_CASE(agent_output_cap_sets_truncated_instead_of_growing) {
    with_agent([](kvm_backend& vm) -> asio::awaitable<void> {
        auto e = argv("sh", "-c", "head -c 300000 /dev/zero");
        e.max_output = 100000;
        auto r = co_await run(vm, e);
        BOOST_REQUIRE(r.exit);
        BOOST_TEST(r.out.size() == 100000u);
        BOOST_TEST(r.exit->stdout_truncated);
    });
}
