// The sandbox layer end to end without KVM: microvm_sandbox over an in_process_vm, whose vsock
// connections are socket pairs served by the real guest agent code. Commands run on the test
// host; file operations use a temporary directory.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE sandbox_agent
#include <boost/test/unit_test.hpp>

#include "in_process_vm.hpp"
#include "run_body.hpp"
#include "mimobox/vm/error.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>

using namespace mimobox::vm;
using mimobox::test::in_process_vm;
using mimobox::test::shell;
namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

template <class Body>
void run(asio::io_context& ctx, Body body, std::chrono::seconds limit = 60s) {
    mimobox::test::run_body(ctx, std::move(body), limit);
}

struct fixture {
    asio::io_context ctx;
    in_process_vm* vm = nullptr;
    microvm_sandbox sb;
    std::filesystem::path dir;

    explicit fixture(sandbox_config config = sandbox_config()) {
        sb = mimobox::test::make_in_process_sandbox(ctx, std::move(config), vm);
        char tmpl[] = "/tmp/mimobox-sandbox-test-XXXXXX";
        dir = ::mkdtemp(tmpl);
    }
    ~fixture() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
    void start() {
        run(ctx, [this]() -> asio::awaitable<void> {
            auto [ec] = co_await sb.async_start(use_tuple);
            BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        });
        BOOST_REQUIRE(sb.state() == microvm_state::ready);
    }
    std::string path(const std::string& name) const { return (dir / name).string(); }
};

sandbox_config quick_timeouts() {
    sandbox_config c;
    c.agent_idle_timeout = 300ms;
    c.exec_timeout_grace = 300ms;
    c.ready_timeout = 5s;
    return c;
}

// A peer that accepts the connection and then says nothing until the host hangs up.
void silent_agent(int fd) {
    pollfd p{fd, POLLRDHUP, 0};
    char buf[4096];
    for (;;) {
        if (::poll(&p, 1, -1) < 0) return;
        if (::read(fd, buf, sizeof buf) <= 0) return;
    }
}

// A peer that accepts the connection and never reads from it, until the host hangs up.
void deaf_agent(int fd) {
    pollfd p{fd, POLLRDHUP, 0};
    while (::poll(&p, 1, -1) >= 0 && !(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(start_seeds_the_rng_and_sets_the_hostname_then_is_ready) {
    sandbox_config config;
    config.hostname = "unit-box";
    fixture f(config);
    f.start();
    BOOST_TEST(f.vm->hostname() == "unit-box");
    BOOST_TEST(f.vm->entropy_bytes() == 64u);
    // The CRNG reseeded from that entropy, and the clock set from the host's.
    BOOST_TEST(f.vm->reseeds() == 1);
    const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    BOOST_TEST(f.vm->wall_clock_ns() <= now_ns);
    BOOST_TEST(f.vm->wall_clock_ns() > now_ns - std::int64_t(60'000'000'000));
    BOOST_TEST(f.sb.agent_version() == mimobox::agent::guest::agent_version);
}

BOOST_AUTO_TEST_CASE(exec_collects_both_streams_and_the_exit_code) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        auto [ec, r] = co_await f.sb.async_exec(shell("echo out; echo err >&2; exit 3"), use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST(r.stdout_data == "out\n");
        BOOST_TEST(r.stderr_data == "err\n");
        BOOST_TEST(r.exit_code == 3);
        BOOST_TEST(!r.timed_out);
    });
}

BOOST_AUTO_TEST_CASE(exec_feeds_stdin_data_and_honours_env_and_cwd) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        guest_exec_options options;
        options.stdin_data = std::string(200'000, 'x');  // more than one frame and one socket buffer
        options.env["GREETING"] = "hi";
        options.cwd = f.dir.string();
        auto [ec, r] = co_await f.sb.async_exec(shell("echo $GREETING $(pwd); wc -c"), options, use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST(r.stdout_data == "hi " + f.dir.string() + "\n200000\n");
    });
}

BOOST_AUTO_TEST_CASE(exec_timeout_kills_the_command_and_says_so) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        guest_exec_options options;
        options.timeout = 200ms;
        auto [ec, r] = co_await f.sb.async_exec(shell("sleep 30"), options, use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST(r.timed_out);
        BOOST_TEST(r.exit_code == -1);
    });
}

BOOST_AUTO_TEST_CASE(exec_output_beyond_the_cap_is_cut_and_flagged) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        guest_exec_options options;
        options.max_output_bytes = 1000;
        auto [ec, r] = co_await f.sb.async_exec(shell("head -c 5000 /dev/zero"), options, use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST(r.stdout_data.size() == 1000u);
        BOOST_TEST(r.stdout_truncated);
    });
}

BOOST_AUTO_TEST_CASE(exec_stream_delivers_events_takes_stdin_and_can_be_killed) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        guest_exec_options options;
        options.open_stdin = true;
        std::vector<std::string> argv{"cat"};
        auto [ec, stream] = co_await f.sb.async_exec_stream(argv, options, use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        auto [wec, written] = co_await stream.async_write_stdin("abc", use_tuple);
        BOOST_TEST(!wec);
        BOOST_TEST(written == 3u);
        auto [nec, ev] = co_await stream.async_next(use_tuple);
        BOOST_TEST(!nec);
        BOOST_TEST((ev.kind == stream_event_kind::stdout_data));
        BOOST_TEST(ev.data == "abc");
        auto [kec] = co_await stream.async_kill(use_tuple);
        BOOST_TEST(!kec);
        for (;;) {
            auto [xec, last] = co_await stream.async_next(use_tuple);
            BOOST_REQUIRE_MESSAGE(!xec, xec.message());
            if (last.kind != stream_event_kind::exit) continue;
            BOOST_TEST(last.status.signal == 9);
            break;
        }
        auto [eec, after] = co_await stream.async_next(use_tuple);
        BOOST_TEST((eec == asio::error::eof));
    });
}

BOOST_AUTO_TEST_CASE(closing_stdin_ends_the_command_and_later_writes_fail) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        guest_exec_options options;
        options.open_stdin = true;
        std::vector<std::string> argv{"wc", "-c"};
        auto [ec, stream] = co_await f.sb.async_exec_stream(argv, options, use_tuple);
        BOOST_REQUIRE(!ec);
        co_await stream.async_write_stdin(std::string(70'000, 'y'), use_tuple);
        auto [cec] = co_await stream.async_close_stdin(use_tuple);
        BOOST_TEST(!cec);
        auto [wec, n] = co_await stream.async_write_stdin("late", use_tuple);
        BOOST_TEST((wec == sandbox_errc::stdin_closed));
        BOOST_TEST((wec == condition::invalid_state));
        std::string out;
        for (;;) {
            auto [nec, ev] = co_await stream.async_next(use_tuple);
            BOOST_REQUIRE_MESSAGE(!nec, nec.message());
            if (ev.kind == stream_event_kind::stdout_data) out += ev.data;
            if (ev.kind == stream_event_kind::exit) break;
        }
        BOOST_TEST(out == "70000\n");
    });
}

BOOST_AUTO_TEST_CASE(every_file_operation_works_on_the_agents_filesystem) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        const std::string big(300'000, 'z');
        auto [mec] = co_await f.sb.async_mkdir(f.path("a/b/c"), {.parents = true}, use_tuple);
        BOOST_TEST(!mec);
        auto [wec] = co_await f.sb.async_write_file(f.path("a/b/c/file"), big, 0600, use_tuple);
        BOOST_TEST(!wec);
        auto [rec, data] = co_await f.sb.async_read_file(f.path("a/b/c/file"), use_tuple);
        BOOST_TEST(!rec);
        BOOST_TEST((data == big));
        auto [sec, st] = co_await f.sb.async_stat(f.path("a/b/c/file"), use_tuple);
        BOOST_TEST(!sec);
        BOOST_TEST(st.size == big.size());
        BOOST_TEST(st.mode == 0600u);
        BOOST_TEST((st.type == guest_file_type::regular));
        auto [lec, entries] = co_await f.sb.async_list_dir(f.path("a/b/c"), use_tuple);
        BOOST_TEST(!lec);
        BOOST_REQUIRE(entries.size() == 1u);
        BOOST_TEST(entries[0].name == "file");
        auto [nec] = co_await f.sb.async_rename(f.path("a/b/c/file"), f.path("a/moved"), use_tuple);
        BOOST_TEST(!nec);
        auto [xec, there] = co_await f.sb.async_exists(f.path("a/moved"), use_tuple);
        BOOST_TEST((!xec && there));
        auto [oec, gone] = co_await f.sb.async_exists(f.path("a/b/c/file"), use_tuple);
        BOOST_TEST((!oec && !gone));
        auto [pec] = co_await f.sb.async_remove(f.path("a"), use_tuple);
        BOOST_TEST((pec == guest_file_errc::directory_not_empty));
        auto [dec] = co_await f.sb.async_remove(f.path("a"), {.recursive = true}, use_tuple);
        BOOST_TEST(!dec);
        auto [mis, nothing] = co_await f.sb.async_read_file(f.path("a/moved"), use_tuple);
        BOOST_TEST((mis == condition::not_found));
        auto [iec, ist] = co_await f.sb.async_stat("relative/path", use_tuple);
        BOOST_TEST((iec == guest_file_errc::invalid_path));
    });
}

BOOST_AUTO_TEST_CASE(read_file_past_the_hosts_cap_is_refused) {
    sandbox_config config;
    config.max_read_file_bytes = 100'000;
    fixture f(config);
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        auto [wec] = co_await f.sb.async_write_file(f.path("big"), std::string(200'000, 'q'), use_tuple);
        BOOST_TEST(!wec);
        auto [rec, data] = co_await f.sb.async_read_file(f.path("big"), use_tuple);
        BOOST_TEST((rec == guest_file_errc::file_too_large));
        BOOST_TEST(data.empty());
    });
}

BOOST_AUTO_TEST_CASE(refused_connections_are_retried_until_the_agent_listens) {
    fixture f;
    f.start();
    f.vm->refuse_connects = 5;
    run(f.ctx, [&]() -> asio::awaitable<void> {
        // Spares absorb some refusals (an operation then connects itself); every operation
        // succeeds, and by the end every refusal was met.
        for (int i = 0; i < 8; ++i) {
            auto [ec, st] = co_await f.sb.async_stat(f.dir.string(), use_tuple);
            BOOST_TEST(!ec, ec.message());
            BOOST_TEST((st.type == guest_file_type::directory));
        }
    });
    BOOST_TEST(f.vm->refuse_connects.load() == 0);
}

BOOST_AUTO_TEST_CASE(a_request_the_agent_never_received_is_sent_again_on_a_new_connection) {
    fixture f;
    f.start();
    // From now on the first two connections are closed without a byte read; the spares opened
    // at start are served by the real agent, their replacements by this.
    std::atomic<int> hangups{0};
    f.vm->agent = [&hangups](int fd) {
        if (hangups.fetch_add(1) < 2) return;
        mimobox::agent::guest::serve_connection(fd, mimobox::agent::guest::guest_system{[](const std::string&) { return 0; },
                                                                                        [](const std::string&) { return 0; }, {}, {}});
    };
    run(f.ctx, [&]() -> asio::awaitable<void> {
        // A request larger than the socket's buffer, so its write fails when the peer hangs up.
        // (Six variables: one environment string may not exceed 128 KiB.)
        guest_exec_options options;
        for (int v = 0; v < 6; ++v) options.env["BIG" + std::to_string(v)] = std::string(100'000, 'b');
        for (int i = 0; i < 4; ++i) {
            auto [ec, r] = co_await f.sb.async_exec(shell("echo ${#BIG0} ${#BIG5}"), options, use_tuple);
            BOOST_TEST(!ec, ec.message());
            BOOST_TEST(r.stdout_data == "100000 100000\n");
        }
    });
    BOOST_TEST(hangups.load() >= 3);
}

BOOST_AUTO_TEST_CASE(an_agent_that_hangs_up_is_agent_disconnected) {
    fixture f;
    f.start();
    f.vm->agent = [](int fd) {
        char buf[64];
        [[maybe_unused]] auto n = ::read(fd, buf, sizeof buf);  // takes (part of) the request, then hangs up
    };
    run(f.ctx, [&]() -> asio::awaitable<void> {
        // Two spares were made with the real agent: skip past them.
        for (int i = 0; i < 2; ++i) co_await f.sb.async_stat(f.dir.string(), use_tuple);
        auto [ec, st] = co_await f.sb.async_stat(f.dir.string(), use_tuple);
        BOOST_TEST((ec == sandbox_errc::agent_disconnected), ec.message());
        BOOST_TEST((ec == condition::agent_failed));
    });
}

BOOST_AUTO_TEST_CASE(an_agent_that_says_nothing_times_out_on_the_hosts_deadline) {
    fixture f(quick_timeouts());
    f.start();
    f.vm->agent = silent_agent;
    run(f.ctx, [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 2; ++i) co_await f.sb.async_stat(f.dir.string(), use_tuple);  // the spares
        const auto t0 = std::chrono::steady_clock::now();
        auto [ec, st] = co_await f.sb.async_stat(f.dir.string(), use_tuple);
        BOOST_TEST((ec == sandbox_errc::agent_timeout), ec.message());
        BOOST_TEST((ec == condition::timed_out));
        BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
    });
}

BOOST_AUTO_TEST_CASE(destroying_the_sandbox_ends_operations_in_flight_with_vm_stopped) {
    fixture f;
    f.start();
    run(f.ctx, [&]() -> asio::awaitable<void> {
        using namespace asio::experimental::awaitable_operators;
        auto sleeper = [&]() -> asio::awaitable<error_code> {
            auto [ec, r] = co_await f.sb.async_exec(shell("sleep 30"), use_tuple);
            co_return ec;
        };
        auto destroyer = [&]() -> asio::awaitable<error_code> {
            asio::steady_timer t(co_await asio::this_coro::executor, 200ms);
            co_await t.async_wait(use_tuple);
            auto [ec] = co_await f.sb.async_destroy(use_tuple);
            co_return ec;
        };
        auto [exec_ec, destroy_ec] = co_await (sleeper() && destroyer());
        BOOST_TEST((exec_ec == condition::vm_stopped), exec_ec.message());
        BOOST_TEST(!destroy_ec);
    });
    BOOST_TEST((f.sb.state() == microvm_state::destroyed));
}

// ---- cancellation: the types each operation honours (microvm_sandbox.hpp, exec_stream.hpp)

namespace {

constexpr auto terminal = asio::cancellation_type::terminal;
constexpr auto partial = asio::cancellation_type::partial;
constexpr auto total = asio::cancellation_type::total;

// Starts `op` with a callback bound to a cancellation slot, emits `type` `delay` later, and
// returns what the operation completed with. With no delay, the operation is started and
// cancelled in one handler on the sandbox's strand, so the cancellation is certain to find it
// running (from another context it could land after an operation that finished at once).
template <class... Ts, class Op>
std::tuple<error_code, Ts...> run_cancelled(fixture& f, Op op, asio::cancellation_type type,
                                            std::chrono::milliseconds delay = 0ms,
                                            std::chrono::milliseconds terminal_after = 0ms) {
    std::optional<std::tuple<error_code, Ts...>> result;
    asio::cancellation_signal sig;
    auto start = [&] {
        op(asio::bind_cancellation_slot(sig.slot(), [&result](error_code ec, Ts... v) { result.emplace(ec, std::move(v)...); }));
    };
    asio::steady_timer timer(f.ctx, delay);
    if (delay == 0ms) {
        asio::post(f.sb.get_executor(), [&] {
            start();
            if (type != asio::cancellation_type::none) sig.emit(type);
        });
    } else {
        start();
        timer.async_wait([&](error_code ec) {
            if (!ec && !result) sig.emit(type);
        });
    }
    // Optionally a terminal cancellation later still: ends an operation the first one did not.
    asio::steady_timer second(f.ctx, terminal_after);
    if (terminal_after > 0ms)
        second.async_wait([&](error_code ec) {
            if (!ec && !result) sig.emit(asio::cancellation_type::terminal);
        });
    f.ctx.restart();
    while (!result && f.ctx.run_one_for(30s)) {
    }
    timer.cancel();
    second.cancel();
    BOOST_REQUIRE_MESSAGE(result, "the operation did not complete");
    return std::move(*result);
}

bool aborted(const error_code& ec) { return ec == asio::error::operation_aborted; }

exec_stream open_with_stdin(fixture& f, std::vector<std::string> argv) {
    guest_exec_options options;
    options.open_stdin = true;
    auto [ec, stream] = run_cancelled<exec_stream>(f, [&](auto token) { f.sb.async_exec_stream(argv, options, token); },
                                                   asio::cancellation_type::none);
    BOOST_REQUIRE(!ec);
    return std::move(stream);
}

}  // namespace

BOOST_AUTO_TEST_CASE(exec_honours_terminal_and_partial_cancellation_and_ignores_total) {
    fixture f;
    f.start();
    for (auto type : {terminal, partial}) {
        const auto t0 = std::chrono::steady_clock::now();
        auto [ec, r] = run_cancelled<guest_command_result>(
            f, [&](auto token) { f.sb.async_exec(shell("sleep 30"), token); }, type, 200ms);
        BOOST_TEST(aborted(ec), ec.message());
        BOOST_TEST((std::chrono::steady_clock::now() - t0 < 10s));
    }
    auto [ec, r] = run_cancelled<guest_command_result>(
        f, [&](auto token) { f.sb.async_exec(shell("sleep 0.5; echo done"), token); }, total, 100ms);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(r.stdout_data == "done\n");
    // The sandbox stays usable after the cancellations.
    auto [later, ok] = run_cancelled<guest_command_result>(f, [&](auto token) { f.sb.async_exec(shell("echo ok"), token); },
                                                           asio::cancellation_type::none);
    BOOST_TEST(ok.stdout_data == "ok\n");
}

BOOST_AUTO_TEST_CASE(opening_an_exec_stream_honours_terminal_and_partial_and_ignores_total) {
    fixture f;
    f.start();
    // An agent that never reads, and a request larger than the socket's buffer: the open stays
    // in flight until cancelled. The two spares opened at start go first.
    f.vm->agent = deaf_agent;
    for (int i = 0; i < 2; ++i) run(f.ctx, [&]() -> asio::awaitable<void> { co_await f.sb.async_stat(f.dir.string(), use_tuple); });
    guest_exec_options options;
    for (int v = 0; v < 6; ++v) options.env["BIG" + std::to_string(v)] = std::string(100'000, 'b');
    std::vector<std::string> argv{"true"};
    for (auto type : {terminal, partial}) {
        auto [ec, s] = run_cancelled<exec_stream>(f, [&](auto token) { f.sb.async_exec_stream(argv, options, token); }, type, 100ms);
        BOOST_TEST(aborted(ec), ec.message());
        BOOST_TEST(!s.is_open());
    }
    // Total is ignored: only the terminal cancellation that follows ends it.
    const auto t0 = std::chrono::steady_clock::now();
    auto [ec, s] = run_cancelled<exec_stream>(f, [&](auto token) { f.sb.async_exec_stream(argv, options, token); }, total,
                                              100ms, 600ms);
    BOOST_TEST(aborted(ec), ec.message());
    BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 600ms));
}

BOOST_AUTO_TEST_CASE(reading_file_operations_honour_every_cancellation_type) {
    fixture f;
    f.start();
    const auto file = f.path("f");
    run(f.ctx, [&]() -> asio::awaitable<void> { co_await f.sb.async_write_file(file, "contents", use_tuple); });
    for (auto type : {terminal, partial, total}) {
        auto [rec, data] = run_cancelled<std::string>(f, [&](auto token) { f.sb.async_read_file(file, token); }, type);
        BOOST_TEST(aborted(rec), rec.message());
        auto [lec, entries] =
            run_cancelled<std::vector<guest_dir_entry>>(f, [&](auto token) { f.sb.async_list_dir(f.dir.string(), token); }, type);
        BOOST_TEST(aborted(lec), lec.message());
        auto [sec, st] = run_cancelled<guest_file_stat>(f, [&](auto token) { f.sb.async_stat(file, token); }, type);
        BOOST_TEST(aborted(sec), sec.message());
        auto [xec, there] = run_cancelled<bool>(f, [&](auto token) { f.sb.async_exists(file, token); }, type);
        BOOST_TEST(aborted(xec), xec.message());
    }
    auto [ec, data] = run_cancelled<std::string>(f, [&](auto token) { f.sb.async_read_file(file, token); },
                                                 asio::cancellation_type::none);
    BOOST_TEST(data == "contents");
}

BOOST_AUTO_TEST_CASE(changing_file_operations_honour_terminal_and_partial_and_ignore_total) {
    fixture f;
    f.start();
    const std::string data(500'000, 'w');
    for (auto type : {terminal, partial}) {
        const auto file = f.path("written");
        auto [wec] = run_cancelled(f, [&](auto token) { f.sb.async_write_file(file, data, token); }, type);
        BOOST_TEST(aborted(wec), wec.message());
        // Atomic: the file is absent or whole, never a part.
        std::error_code fs_ec;
        const auto size = std::filesystem::file_size(file, fs_ec);
        BOOST_TEST((fs_ec || size == data.size()));
        auto [mec] = run_cancelled(f, [&](auto token) { f.sb.async_mkdir(f.path("d1"), token); }, type);
        BOOST_TEST(aborted(mec), mec.message());
        auto [rec] = run_cancelled(f, [&](auto token) { f.sb.async_rename(f.path("x"), f.path("y"), token); }, type);
        BOOST_TEST(aborted(rec), rec.message());
        auto [dec] = run_cancelled(f, [&](auto token) { f.sb.async_remove(f.path("x"), token); }, type);
        BOOST_TEST(aborted(dec), dec.message());
    }
    auto [wec] = run_cancelled(f, [&](auto token) { f.sb.async_write_file(f.path("kept"), data, token); }, total);
    BOOST_TEST(!wec, wec.message());
    BOOST_TEST(std::filesystem::file_size(f.path("kept")) == data.size());
    auto [mec] = run_cancelled(f, [&](auto token) { f.sb.async_mkdir(f.path("d2"), token); }, total);
    BOOST_TEST(!mec, mec.message());
    auto [nec] = run_cancelled(f, [&](auto token) { f.sb.async_rename(f.path("kept"), f.path("moved"), token); }, total);
    BOOST_TEST(!nec, nec.message());
    auto [dec] = run_cancelled(f, [&](auto token) { f.sb.async_remove(f.path("moved"), token); }, total);
    BOOST_TEST(!dec, dec.message());
}

BOOST_AUTO_TEST_CASE(start_honours_terminal_and_partial_and_leaves_the_sandbox_failed) {
    for (auto type : {terminal, partial}) {
        fixture f;
        auto [ec] = run_cancelled(f, [&](auto token) { f.sb.async_start(token); }, type);
        BOOST_TEST(aborted(ec), ec.message());
        BOOST_TEST((f.sb.state() == microvm_state::failed));
    }
    fixture f;
    auto [ec] = run_cancelled(f, [&](auto token) { f.sb.async_start(token); }, total);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST((f.sb.state() == microvm_state::ready));
}

BOOST_AUTO_TEST_CASE(a_cancelled_async_next_loses_nothing_and_the_stream_stays_usable) {
    fixture f;
    f.start();
    auto stream = open_with_stdin(f, {"cat"});
    for (auto type : {terminal, partial, total}) {
        auto [ec, ev] = run_cancelled<stream_event>(f, [&](auto token) { stream.async_next(token); }, type, 100ms);
        BOOST_TEST(aborted(ec), ec.message());
        auto [wec, n] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin("line", token); },
                                                   asio::cancellation_type::none);
        BOOST_TEST(!wec);
        std::string got;
        while (got.size() < 4) {
            auto [nec, out] = run_cancelled<stream_event>(f, [&](auto token) { stream.async_next(token); },
                                                          asio::cancellation_type::none);
            BOOST_REQUIRE_MESSAGE(!nec, nec.message());
            got += out.data;
        }
        BOOST_TEST(got == "line");
    }
}

namespace {
// A stream whose command reads its stdin only after a second, so a large write blocks first.
exec_stream slow_reader(fixture& f) { return open_with_stdin(f, shell("sleep 1; wc -c")); }

std::string output_of(fixture& f, exec_stream& stream) {
    std::string out;
    for (;;) {
        auto [ec, ev] = run_cancelled<stream_event>(f, [&](auto token) { stream.async_next(token); }, asio::cancellation_type::none);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        if (ev.kind == stream_event_kind::stdout_data) out += ev.data;
        if (ev.kind == stream_event_kind::exit) return out;
    }
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_partially_cancelled_stdin_write_stops_at_a_frame_boundary_and_the_rest_arrives_intact) {
    fixture f;
    f.start();
    auto stream = slow_reader(f);
    const std::string data(4 << 20, 's');
    auto [ec, sent] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin(data, token); }, partial, 200ms);
    BOOST_TEST(aborted(ec), ec.message());
    BOOST_TEST(sent < data.size());
    BOOST_TEST(sent % (64 * 1024) == 0u);  // whole frames only
    auto [rec, rest] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin(data.substr(sent), token); },
                                                  asio::cancellation_type::none);
    BOOST_TEST(!rec, rec.message());
    BOOST_TEST(rest == data.size() - sent);
    auto [cec] = run_cancelled(f, [&](auto token) { stream.async_close_stdin(token); }, asio::cancellation_type::none);
    BOOST_TEST(!cec);
    BOOST_TEST(output_of(f, stream) == std::to_string(data.size()) + "\n");
}

BOOST_AUTO_TEST_CASE(a_terminally_cancelled_stdin_write_breaks_the_stream_or_leaves_it_intact_never_half_written) {
    fixture f;
    f.start();
    auto stream = slow_reader(f);
    const std::string data(4 << 20, 't');
    auto [ec, sent] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin(data, token); }, terminal, 200ms);
    BOOST_TEST(aborted(ec), ec.message());
    BOOST_TEST(sent % (64 * 1024) == 0u);
    auto [rec, rest] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin(data.substr(sent), token); },
                                                  asio::cancellation_type::none);
    if (rec == sandbox_errc::stream_broken) {
        // The cancel cut a frame: the stream hung up, and says so from then on.
        auto [nec, ev] = run_cancelled<stream_event>(f, [&](auto token) { stream.async_next(token); }, asio::cancellation_type::none);
        BOOST_TEST((nec == sandbox_errc::stream_broken), nec.message());
        auto [kec] = run_cancelled(f, [&](auto token) { stream.async_kill(token); }, asio::cancellation_type::none);
        BOOST_TEST(!kec);
    } else {
        BOOST_TEST(!rec, rec.message());
        run_cancelled(f, [&](auto token) { stream.async_close_stdin(token); }, asio::cancellation_type::none);
        BOOST_TEST(output_of(f, stream) == std::to_string(data.size()) + "\n");
    }
}

BOOST_AUTO_TEST_CASE(a_stdin_write_ignores_total_cancellation) {
    fixture f;
    f.start();
    auto stream = slow_reader(f);
    const std::string data(1 << 20, 'u');
    auto [ec, sent] = run_cancelled<std::size_t>(f, [&](auto token) { stream.async_write_stdin(data, token); }, total, 200ms);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(sent == data.size());
    run_cancelled(f, [&](auto token) { stream.async_close_stdin(token); }, asio::cancellation_type::none);
    BOOST_TEST(output_of(f, stream) == std::to_string(data.size()) + "\n");
}

BOOST_AUTO_TEST_CASE(kill_and_close_stdin_ignore_cancellation) {
    fixture f;
    f.start();
    auto stream = open_with_stdin(f, {"cat"});
    auto [cec] = run_cancelled(f, [&](auto token) { stream.async_close_stdin(token); }, terminal);
    BOOST_TEST(!cec, cec.message());
    BOOST_TEST(output_of(f, stream).empty());  // cat saw end of input and exited
    auto [s2ec, sleeper] = run_cancelled<exec_stream>(f, [&](auto token) { f.sb.async_exec_stream(shell("sleep 30"), token); },
                                                      asio::cancellation_type::none);
    BOOST_REQUIRE(!s2ec);
    auto [kec] = run_cancelled(f, [&](auto token) { sleeper.async_kill(token); }, terminal);
    BOOST_TEST(!kec, kec.message());
    for (;;) {
        auto [nec, ev] = run_cancelled<stream_event>(f, [&](auto token) { sleeper.async_next(token); }, asio::cancellation_type::none);
        BOOST_REQUIRE_MESSAGE(!nec, nec.message());
        if (ev.kind != stream_event_kind::exit) continue;
        BOOST_TEST(ev.status.signal == 9);
        break;
    }
}
