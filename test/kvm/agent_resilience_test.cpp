// The guest agent against hostile or careless guest code (commands run as root): signals to every
// process, escaped daemons, FIFOs, symlinks, absurd timeouts. Through the public API only.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE agent_resilience
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vm_test_support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <optional>
#include <tuple>

using namespace mimobox;
using namespace mimobox::test;
using namespace boost::asio::experimental::awaitable_operators;
using vm::guest_exec_options;
using vm::microvm_sandbox;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using result_tuple = std::tuple<error_code, vm::guest_command_result>;

// Variadic, and configs made outside coroutines: GCC 12 miscompiles braced initializer lists of
// strings and braced temporaries with string members inside coroutines (see sandbox_test.cpp).
template <class... Args>
std::vector<std::string> argv(const Args&... a) {
    std::vector<std::string> v;
    (v.emplace_back(a), ...);
    return v;
}
guest_exec_options defaults() { return {}; }
guest_exec_options with_timeout(std::chrono::milliseconds t) {
    guest_exec_options o;
    o.timeout = t;
    return o;
}
vm::sandbox_config transport(vm::kvm_transport t) {
    vm::sandbox_config c;
    c.transport = t;
    return c;
}

asio::awaitable<microvm_sandbox> start_sandbox(asio::io_context& ctx, vm::sandbox_config config) {
    microvm_sandbox sb(ctx.get_executor(), guest_config("", 1, 256), config);
    auto [ec] = co_await sb.async_start(use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "sandbox: " << ec.message() << vm_report(sb));
    co_return std::move(sb);
}
asio::awaitable<microvm_sandbox> start_sandbox(asio::io_context& ctx) {
    return start_sandbox(ctx, transport(vm::kvm_transport::vsock));
}

asio::awaitable<vm::guest_command_result> shell(microvm_sandbox& sb, std::string command) {
    auto [ec, r] = co_await sb.async_exec_shell(std::move(command), defaults(), use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "exec: " << ec.message() << vm_report(sb));
    co_return r;
}

asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

// Polls `command` until it prints `expected` (kills and reaping are asynchronous).
asio::awaitable<std::string> eventually(microvm_sandbox& sb, std::string command, std::string expected) {
    std::string last;
    for (int i = 0; i < 50; ++i) {
        last = (co_await shell(sb, command)).stdout_data;
        if (last == expected) break;
        co_await sleep_for(200ms);
    }
    co_return last;
}

// An exec that does not finish within `limit` is a failure here, not a hang of the whole test
// (the exec is cancelled then: the host hangs up).
asio::awaitable<std::optional<result_tuple>> exec_within(microvm_sandbox& sb, std::string command, guest_exec_options o,
                                                         std::chrono::steady_clock::duration limit) {
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    auto r = co_await (sb.async_exec_shell(std::move(command), std::move(o), use_tuple) || timer.async_wait(use_tuple));
    if (r.index() == 1) co_return std::nullopt;
    co_return std::get<0>(std::move(r));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Three operations of different kinds in a row, each of which must succeed.
asio::awaitable<void> three_operations_succeed(microvm_sandbox& sb, const char* when) {
    BOOST_TEST_CONTEXT(when) {
        auto [eec, echo] = co_await sb.async_exec(argv("echo", "alive"), defaults(), use_tuple);
        BOOST_TEST(!eec, "exec: " << eec.message());
        BOOST_TEST(echo.stdout_data == "alive\n");
        auto [wec] = co_await sb.async_write_file("/tmp/after-kill", "still writable", use_tuple);
        BOOST_TEST(!wec, "write_file: " << wec.message());
        auto [rec, back] = co_await sb.async_read_file("/tmp/after-kill", use_tuple);
        BOOST_TEST(!rec, "read_file: " << rec.message());
        BOOST_TEST(back == "still writable");
    }
}

// The agent's whole answer to an exec of `echo ran` with `timeout_ms`, sent as raw protocol
// straight to its port: the host library refuses such timeouts before sending, but the agent
// must not rely on that.
asio::awaitable<std::string> raw_exec_answer(microvm_sandbox& sb, std::uint64_t timeout_ms) {
    auto [cec, s] = co_await sb.backend().async_vsock_connect(52, use_tuple);
    BOOST_REQUIRE_MESSAGE(!cec, cec.message());
    const std::string body = R"({"v":1,"op":"exec","argv":["echo","ran"],"env":[],"cwd":"/","timeout_ms":)" +
                             std::to_string(timeout_ms) + R"(,"stdin":false,"max_output":65536})";
    std::string frame(5, '\0');
    const auto length = static_cast<std::uint32_t>(body.size() + 1);
    std::memcpy(frame.data(), &length, 4);  // u32 length (little-endian) | u8 kind | body
    frame[4] = 1;                           // a message
    frame += body;
    auto [wec, written] = co_await asio::async_write(s, asio::buffer(frame), use_tuple);
    BOOST_REQUIRE_MESSAGE(!wec, wec.message());
    std::string answer;
    char buf[4096];
    for (;;) {  // the agent shuts the connection down after its answer
        auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
        answer.append(buf, n);
        if (rec) break;
    }
    co_return answer;
}

}  // namespace

BOOST_AUTO_TEST_CASE(kill_9_minus_1_ends_neither_its_own_exec_nor_another_nor_the_next_operations) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        // Another operation's command, running when the kill comes: SIGKILL is its own result.
        std::optional<result_tuple> bystander;
        sb.async_exec(argv("sleep", "999"), defaults(), [&](error_code ec, vm::guest_command_result r) { bystander.emplace(ec, r); });
        BOOST_REQUIRE(co_await eventually(sb, "ps | grep -c '[s]leep 999'", "1\n") == "1\n");

        // kill is a shell builtin: the shell is the caller, which kill -1 spares.
        auto [ec, r] = co_await sb.async_exec_shell("sleep 1000 & sleep 1000 & kill -9 -1; echo survived; exit 7", defaults(), use_tuple);
        BOOST_TEST(!ec, "exec: " << ec.message());
        BOOST_TEST(r.exit_code == 7);
        BOOST_TEST(r.stdout_data == "survived\n");
        for (int i = 0; i < 100 && !bystander; ++i) co_await sleep_for(100ms);
        BOOST_REQUIRE_MESSAGE(bystander.has_value(), "the other exec never ended");
        BOOST_TEST(!std::get<0>(*bystander), "other exec: " << std::get<0>(*bystander).message());
        BOOST_TEST(std::get<1>(*bystander).signal == 9);
        co_await three_operations_succeed(sb, "after kill -9 -1 from the shell");

        // From a subshell (not the last command, so really forked) the kill takes the shell too:
        // its death by SIGKILL is the exec's result.
        auto [ec2, r2] = co_await sb.async_exec_shell("sleep 1000 & sleep 1000 & (kill -9 -1); echo unreachable", defaults(), use_tuple);
        BOOST_TEST(!ec2, "exec: " << ec2.message());
        BOOST_TEST(r2.signal == 9);
        BOOST_TEST(r2.stdout_data.empty());
        co_await three_operations_succeed(sb, "after kill -9 -1 from a subshell");
        BOOST_TEST(co_await eventually(sb, "ps | grep -c '[s]leep 1000'", "0\n") == "0\n");
    });
}

// With the serial transport the guest end of the link is the agent's serial bridge.
BOOST_AUTO_TEST_CASE(kill_9_minus_1_leaves_the_serial_bridge_serving) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx, transport(vm::kvm_transport::serial));
        auto [ec, r] = co_await sb.async_exec_shell("sleep 1000 & kill -9 -1; echo survived", defaults(), use_tuple);
        BOOST_TEST(!ec, "exec: " << ec.message());
        BOOST_TEST(r.stdout_data == "survived\n");
        co_await three_operations_succeed(sb, "after kill -9 -1 over the serial transport");
    });
}

BOOST_AUTO_TEST_CASE(a_timeout_ends_an_exec_whose_setsid_child_holds_stdout_and_kills_that_child) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        const auto t0 = std::chrono::steady_clock::now();
        auto r = co_await exec_within(sb, "setsid sleep 1000 & echo started", with_timeout(2s), 60s);
        const double took = seconds_since(t0);
        BOOST_REQUIRE_MESSAGE(r.has_value(), "a 2 s timeout did not end the exec within 60 s");
        BOOST_TEST(!std::get<0>(*r), "exec: " << std::get<0>(*r).message());
        BOOST_TEST(std::get<1>(*r).timed_out);
        BOOST_TEST(std::get<1>(*r).stdout_data == "started\n");
        BOOST_TEST(took < 10.0, "took " << took << " s");
        // The escaped child was killed too, not merely abandoned.
        BOOST_TEST(co_await eventually(sb, "ps | grep -c '[s]leep 1000'", "0\n") == "0\n");

        // A daemon that left both the session and the process group (double fork): still killed.
        auto d = co_await exec_within(sb, "setsid sh -c 'sleep 1001 & echo daemon' & exec sleep 1002", with_timeout(2s), 60s);
        BOOST_REQUIRE_MESSAGE(d.has_value(), "a 2 s timeout did not end the exec within 60 s");
        BOOST_TEST(std::get<1>(*d).timed_out);
        BOOST_TEST(co_await eventually(sb, "ps | grep -c '[s]leep 100[12]'", "0\n") == "0\n");
    });
}

BOOST_AUTO_TEST_CASE(a_kill_ends_an_exec_stream_whose_setsid_child_holds_stdout) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        auto [sec, stream] = co_await sb.async_exec_stream(argv("sh", "-c", "setsid sleep 1003 & echo started; exec sleep 1004"),
                                                           defaults(), use_tuple);
        BOOST_REQUIRE_MESSAGE(!sec, sec.message());
        auto [fec, first] = co_await stream.async_next(use_tuple);
        BOOST_REQUIRE_MESSAGE(!fec, fec.message());
        BOOST_TEST(first.data == "started\n");
        auto [kec] = co_await stream.async_kill(use_tuple);
        BOOST_TEST(!kec);
        asio::steady_timer limit(ctx, 30s);
        auto last = co_await (stream.async_next(use_tuple) || limit.async_wait(use_tuple));
        BOOST_REQUIRE_MESSAGE(last.index() == 0, "no exit event within 30 s of the kill");
        auto [nec, ev] = std::get<0>(last);
        BOOST_TEST(!nec, nec.message());
        BOOST_TEST((ev.kind == vm::stream_event_kind::exit));
        BOOST_TEST(ev.status.signal == 9);
        BOOST_TEST(co_await eventually(sb, "ps | grep -c '[s]leep 100[34]'", "0\n") == "0\n");
    });
}

BOOST_AUTO_TEST_CASE(fifos_and_devices_are_refused_for_read_and_write_without_blocking) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        co_await shell(sb, "mkfifo /tmp/fifo");
        asio::steady_timer limit(ctx, 30s);
        auto read = co_await (sb.async_read_file("/tmp/fifo", use_tuple) || limit.async_wait(use_tuple));
        BOOST_REQUIRE_MESSAGE(read.index() == 0, "reading a FIFO with no writer hung");
        BOOST_TEST((std::get<0>(std::get<0>(read)) == vm::guest_file_errc::not_a_regular_file), std::get<0>(std::get<0>(read)).message());

        auto [wec] = co_await sb.async_write_file("/tmp/fifo", "x", use_tuple);
        BOOST_TEST((wec == vm::guest_file_errc::not_a_regular_file), wec.message());
        BOOST_TEST((co_await shell(sb, "test -p /tmp/fifo && echo still-a-fifo")).stdout_data == "still-a-fifo\n");
        auto [dec, dev] = co_await sb.async_read_file("/dev/zero", use_tuple);  // would never end
        BOOST_TEST((dec == vm::guest_file_errc::not_a_regular_file), dec.message());
        co_await three_operations_succeed(sb, "after the refusals");
    });
}

BOOST_AUTO_TEST_CASE(timeouts_above_thirty_days_are_refused_and_thirty_days_is_accepted) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        constexpr std::uint64_t thirty_days_ms = 30ull * 24 * 3600 * 1000;
        const std::string over = co_await raw_exec_answer(sb, thirty_days_ms + 1);
        // Refused (EINVAL from exec, or EPROTO where the shared message parser checks the range
        // first), and nothing ran.
        BOOST_TEST(over.find(R"("type":"error")") != std::string::npos, "answer: " << over);
        BOOST_TEST(over.find("ran") == std::string::npos, "answer: " << over);
        // In microseconds this wraps to 0: the agent once took it as "already expired".
        const std::string wraps = co_await raw_exec_answer(sb, 1ull << 62);
        BOOST_TEST(wraps.find(R"("type":"error")") != std::string::npos, "answer: " << wraps);
        BOOST_TEST(wraps.find("ran") == std::string::npos, "answer: " << wraps);
        const std::string ok = co_await raw_exec_answer(sb, thirty_days_ms);
        BOOST_TEST(ok.find(R"("type":"exit")") != std::string::npos, "answer: " << ok);
        BOOST_TEST(ok.find("ran\n") != std::string::npos, "answer: " << ok);
        BOOST_TEST(ok.find(R"("timed_out":true)") == std::string::npos, "answer: " << ok);

        // Through the public API too (whichever side refuses it).
        auto [ec, r] = co_await sb.async_exec(argv("echo", "ran"), with_timeout(std::chrono::hours(24 * 30) + 1ms), use_tuple);
        BOOST_TEST(ec, "a timeout of 30 days + 1 ms ran: exit " << r.exit_code << ", timed_out " << r.timed_out);
        auto [oec, accepted] = co_await sb.async_exec(argv("echo", "ran"), with_timeout(std::chrono::hours(24 * 30)), use_tuple);
        BOOST_TEST(!oec, oec.message());
        BOOST_TEST(accepted.stdout_data == "ran\n");
    });
}

BOOST_AUTO_TEST_CASE(write_file_writes_through_symlinks_and_keeps_an_existing_files_owner_and_mode) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto sb = co_await start_sandbox(ctx);
        co_await shell(sb, "echo old > /tmp/target && chown 1234:5678 /tmp/target && chmod 0640 /tmp/target && "
                           "ln -s target /tmp/link && ln -s /tmp/created /tmp/dangling && ln -s /tmp/loop /tmp/loop");
        auto [wec] = co_await sb.async_write_file("/tmp/link", "new\n", use_tuple);
        BOOST_TEST(!wec, wec.message());
        BOOST_TEST((co_await shell(sb, "readlink /tmp/link; cat /tmp/target; stat -c '%u %g %a' /tmp/target")).stdout_data ==
                   "target\nnew\n1234 5678 640\n");

        // A dangling link: its target is created, with the request's mode.
        auto [dec] = co_await sb.async_write_file("/tmp/dangling", "made\n", 0600, use_tuple);
        BOOST_TEST(!dec, dec.message());
        BOOST_TEST((co_await shell(sb, "readlink /tmp/dangling; cat /tmp/created; stat -c '%a' /tmp/created")).stdout_data ==
                   "/tmp/created\nmade\n600\n");

        auto [nec] = co_await sb.async_write_file("/tmp/fresh", "x", 0751, use_tuple);
        BOOST_TEST(!nec, nec.message());
        auto [sec, st] = co_await sb.async_stat("/tmp/fresh", use_tuple);
        BOOST_TEST(!sec);
        BOOST_TEST(st.mode == 0751u);

        auto [lec] = co_await sb.async_write_file("/tmp/loop", "x", use_tuple);
        BOOST_TEST((lec == vm::guest_file_errc::symlink_loop), lec.message());
        // No temporary file left behind by any of them.
        BOOST_TEST((co_await shell(sb, "ls -A /tmp | grep -c mimobox-write")).stdout_data == "0\n");
    });
}

// The host's own caps: a file larger than max_read_file_bytes is file_too_large (not a host
// allocation of whatever the guest sends), and collected output stops at max_output_bytes.
BOOST_AUTO_TEST_CASE(host_side_caps_refuse_a_file_past_max_read_file_bytes_and_cut_collected_output) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto config = transport(vm::kvm_transport::vsock);
        config.max_read_file_bytes = 1u << 20;
        auto sb = co_await start_sandbox(ctx, config);
        co_await shell(sb, "head -c 2097152 /dev/zero > /tmp/two; head -c 1048576 /dev/zero > /tmp/one");
        auto [ec, data] = co_await sb.async_read_file("/tmp/two", use_tuple);
        BOOST_TEST((ec == vm::guest_file_errc::file_too_large), ec.message());
        BOOST_TEST(data.empty());
        auto [oec, one] = co_await sb.async_read_file("/tmp/one", use_tuple);  // exactly the cap
        BOOST_TEST(!oec, oec.message());
        BOOST_TEST(one.size() == std::size_t(1) << 20);
        guest_exec_options o;
        o.max_output_bytes = 1000;
        auto [xec, r] = co_await sb.async_exec_shell("head -c 5000 /dev/zero", o, use_tuple);
        BOOST_TEST(!xec, xec.message());
        BOOST_TEST(r.stdout_data.size() == 1000u);
        BOOST_TEST(r.stdout_truncated);
        co_await three_operations_succeed(sb, "after the caps");
    });
}
