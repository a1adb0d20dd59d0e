// The host against a guest that misbehaves on purpose (the test init's `spin` and
// `mute-agent` modes): every host operation must end by its own deadline, and a vCPU must stop
// even when the application blocked every signal.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE hostile_guest
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vm_test_support.hpp"

#include <csignal>
#include <pthread.h>

using namespace mimobox;
using namespace mimobox::test;
using vm::microvm_sandbox;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

vm::sandbox_config impatient_config() {
    vm::sandbox_config c;
    c.agent_idle_timeout = std::chrono::seconds(4);
    c.exec_timeout_grace = std::chrono::seconds(3);
    return c;
}

std::vector<std::string> sleep_argv() {
    std::vector<std::string> v;
    v.emplace_back("sleep");
    v.emplace_back("100");
    return v;
}

vm::guest_exec_options one_second_timeout() {
    vm::guest_exec_options o;
    o.timeout = std::chrono::seconds(1);
    return o;
}

}  // namespace

// The vCPU thread used to inherit its creator's mask: with the kick signal blocked, a guest
// that never exits to the VMM could be neither paused nor stopped.
BOOST_AUTO_TEST_CASE(a_spinning_guest_started_from_a_thread_with_every_signal_blocked_still_pauses_and_stops) {
    sigset_t all, old;
    sigfillset(&all);
    BOOST_REQUIRE(::pthread_sigmask(SIG_BLOCK, &all, &old) == 0);
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        vm::kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=spin"));
        auto [bec] = co_await vm.async_boot(use_tuple);
        BOOST_REQUIRE_MESSAGE(!bec, "boot: " << bec.message());
        BOOST_REQUIRE_MESSAGE(!co_await wait_console(vm, "MIMOBOX_SPINNING"), "no spin" << vm_report(vm));
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer limit(ctx, guest_timeout);
        auto paused = co_await (vm.async_pause(use_tuple) || limit.async_wait(use_tuple));
        BOOST_REQUIRE_MESSAGE(paused.index() == 0, "pause did not complete" << vm_report(vm));
        BOOST_TEST(!std::get<0>(std::get<0>(paused)));
        auto [rec] = co_await vm.async_resume(use_tuple);
        BOOST_TEST(!rec);
        limit.expires_after(guest_timeout);
        auto stopped = co_await (vm.async_stop(use_tuple) || limit.async_wait(use_tuple));
        BOOST_REQUIRE_MESSAGE(stopped.index() == 0, "stop did not complete" << vm_report(vm));
        BOOST_TEST((vm.state() == vm::kvm_lifecycle::stopped));
    });
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// An agent that answers nothing: the sandbox does not become ready, and says so in time.
BOOST_AUTO_TEST_CASE(a_guest_whose_agent_never_answers_fails_to_start_within_ready_timeout) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto config = impatient_config();
        config.ready_timeout = std::chrono::seconds(40);  // boot under the harness takes 5-20 s
        microvm_sandbox sb(ctx.get_executor(), guest_config("mimobox.test=mute-agent=0"), config);
        const auto t0 = std::chrono::steady_clock::now();
        auto [ec] = co_await sb.async_start(use_tuple);
        const double took = seconds_since(t0);
        BOOST_TEST((ec == vm::sandbox_errc::ready_timeout), ec.message() << vm_report(sb));
        BOOST_TEST(took < 40 + 15, "start took " << took << " s");
        BOOST_TEST((sb.state() == vm::microvm_state::failed));
    });
}

// The agent answers its start (ping, init) and then goes silent, keeping every connection
// open: each operation ends with agent_timeout by the host's own deadline.
BOOST_AUTO_TEST_CASE(operations_on_an_agent_that_stops_answering_end_with_agent_timeout) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto config = impatient_config();
        microvm_sandbox sb(ctx.get_executor(), guest_config("mimobox.test=mute-agent=2"), config);
        auto [sec] = co_await sb.async_start(use_tuple);
        BOOST_REQUIRE_MESSAGE(!sec, "start: " << sec.message() << vm_report(sb));
        const double slack = 20;  // the harness is slow and noisy

        auto t0 = std::chrono::steady_clock::now();
        auto [stat_ec, st] = co_await sb.async_stat("/", use_tuple);
        BOOST_TEST((stat_ec == vm::sandbox_errc::agent_timeout), stat_ec.message() << vm_report(sb));
        BOOST_TEST(seconds_since(t0) < 4 + slack);

        // The guest's timeout is 1 s; the host's deadline a grace period later.
        t0 = std::chrono::steady_clock::now();
        auto [exec_ec, r] = co_await sb.async_exec(sleep_argv(), one_second_timeout(), use_tuple);
        BOOST_TEST((exec_ec == vm::sandbox_errc::agent_timeout), exec_ec.message() << vm_report(sb));
        BOOST_TEST(seconds_since(t0) < 1 + 3 + slack);

        // A write the guest never reads: the send stalls on vsock credit, then times out.
        t0 = std::chrono::steady_clock::now();
        std::string data(std::size_t(4) << 20, 'x');
        auto [wec] = co_await sb.async_write_file("/tmp/never", std::move(data), use_tuple);
        BOOST_TEST((wec == vm::sandbox_errc::agent_timeout), wec.message() << vm_report(sb));
        BOOST_TEST(seconds_since(t0) < 4 + slack);

        t0 = std::chrono::steady_clock::now();
        auto [rec, contents] = co_await sb.async_read_file("/etc/passwd", use_tuple);
        BOOST_TEST((rec == vm::sandbox_errc::agent_timeout), rec.message() << vm_report(sb));
        BOOST_TEST(seconds_since(t0) < 4 + slack);

        auto [dec] = co_await sb.async_destroy(use_tuple);
        BOOST_TEST(!dec);
    });
}

// The agent hangs up on a request without answering it (a crashed worker looks like this):
// the operation ends at once with agent_disconnected, not at a deadline, and the sandbox
// serves the next one.
BOOST_AUTO_TEST_CASE(an_agent_that_hangs_up_without_answering_is_agent_disconnected_and_the_sandbox_goes_on) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto config = impatient_config();
        microvm_sandbox sb(ctx.get_executor(), guest_config("mimobox.test=hangup-agent=2"), config);
        auto [sec] = co_await sb.async_start(use_tuple);
        BOOST_REQUIRE_MESSAGE(!sec, "start: " << sec.message() << vm_report(sb));
        const auto t0 = std::chrono::steady_clock::now();
        auto [ec, st] = co_await sb.async_stat("/", use_tuple);
        BOOST_TEST((ec == vm::sandbox_errc::agent_disconnected), ec.message() << vm_report(sb));
        BOOST_TEST(seconds_since(t0) < 4.0, "took " << seconds_since(t0) << " s: a deadline, not the hang-up, ended it");
        BOOST_TEST((sb.state() == vm::microvm_state::ready));
        auto [ec2, st2] = co_await sb.async_stat("/", use_tuple);
        BOOST_TEST(!ec2, ec2.message() << vm_report(sb));
        BOOST_TEST((st2.type == vm::guest_file_type::directory));
    });
}
