// sandbox_config::idle_pause_after without KVM: a microvm_sandbox over an in_process_vm (the
// real agent code over socket pairs), whose pause and resume are counted and whose connections
// are refused while paused, so an operation that did not resume the VM first fails.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE sandbox_idle_pause
#include <boost/test/unit_test.hpp>

#include "in_process_vm.hpp"
#include "run_body.hpp"
#include "mimobox/vm/error.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

using namespace mimobox::vm;
using mimobox::test::in_process_vm;
using mimobox::test::shell;
namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

sandbox_config pausing_after(std::chrono::milliseconds idle) {
    sandbox_config c;
    c.idle_pause_after = idle;
    c.ready_timeout = 5s;
    return c;
}

struct fixture {
    asio::io_context ctx;
    in_process_vm* vm = nullptr;
    microvm_sandbox sb;

    explicit fixture(sandbox_config config) { sb = mimobox::test::make_in_process_sandbox(ctx, std::move(config), vm); }

    template <class Body>
    void run(Body body) {
        mimobox::test::run_body(ctx, std::move(body));
    }
    void start() {
        run([this]() -> asio::awaitable<void> {
            auto [ec] = co_await sb.async_start(use_tuple);
            BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        });
    }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

asio::awaitable<void> exec_prints(microvm_sandbox& sb, std::string text) {
    auto [ec, r] = co_await sb.async_exec(shell("echo " + text), use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    BOOST_TEST(r.stdout_data == text + "\n");
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_idle_sandbox_pauses_and_the_next_operation_resumes_it_first) {
    fixture f(pausing_after(50ms));
    f.start();
    f.run([&]() -> asio::awaitable<void> {
        co_await sleep_for(300ms);
        BOOST_TEST(f.vm->pauses.load() == 1);
        BOOST_TEST(f.sb.idle_paused());
        BOOST_TEST((f.sb.state() == microvm_state::ready));
        co_await exec_prints(f.sb, "awake");  // a connect while paused would be refused
        BOOST_TEST(f.vm->resumes.load() == 1);
        BOOST_TEST(!f.sb.idle_paused());
        // File operations resume it too.
        co_await sleep_for(300ms);
        BOOST_TEST(f.vm->pauses.load() == 2);
        auto [ec, exists] = co_await f.sb.async_exists("/", use_tuple);
        BOOST_TEST(!ec, ec.message());
        BOOST_TEST(exists);
        BOOST_TEST(f.vm->resumes.load() == 2);
    });
}

BOOST_AUTO_TEST_CASE(without_idle_pause_after_a_sandbox_never_pauses) {
    fixture f(pausing_after(0ms));
    f.start();
    f.run([&]() -> asio::awaitable<void> {
        co_await sleep_for(200ms);
        co_await exec_prints(f.sb, "x");
        co_await sleep_for(200ms);
        BOOST_TEST(f.vm->pauses.load() == 0);
        BOOST_TEST(!f.sb.idle_paused());
    });
}

BOOST_AUTO_TEST_CASE(an_exec_keeps_the_vm_running_until_its_command_ends_even_with_nobody_reading) {
    fixture f(pausing_after(30ms));
    f.start();
    f.run([&]() -> asio::awaitable<void> {
        const int paused_before = f.vm->pauses.load();  // start()'s context ran into the first pause
        auto [ec, stream] = co_await f.sb.async_exec_stream(shell("sleep 0.4; echo done"), use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        co_await sleep_for(250ms);  // many idle periods, but a command runs
        BOOST_TEST(f.vm->pauses.load() == paused_before);
        BOOST_TEST(!f.sb.idle_paused());
        std::string out;
        for (;;) {
            auto [nec, ev] = co_await stream.async_next(use_tuple);
            BOOST_REQUIRE_MESSAGE(!nec, nec.message());
            if (ev.kind == stream_event_kind::stdout_data) out += ev.data;
            if (ev.kind == stream_event_kind::exit) break;
        }
        BOOST_TEST(out == "done\n");
        // The ended stream, still held, no longer keeps the VM awake.
        co_await sleep_for(200ms);
        BOOST_TEST(f.vm->pauses.load() == paused_before + 1);
    });
}

BOOST_AUTO_TEST_CASE(operations_racing_the_pause_all_complete) {
    fixture f(pausing_after(1ms));
    f.start();
    f.run([&]() -> asio::awaitable<void> {
        // Starts that land before, during and after each pause; several at once.
        for (int round = 0; round < 20; ++round) {
            auto one = [&f](int i) { return asio::co_spawn(f.ctx, exec_prints(f.sb, "r" + std::to_string(i)), asio::deferred); };
            auto [order, e1, e2, e3] = co_await asio::experimental::make_parallel_group(one(1), one(2), one(3))
                                           .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
            BOOST_TEST(!e1);
            BOOST_TEST(!e2);
            BOOST_TEST(!e3);
            co_await sleep_for(std::chrono::milliseconds(round % 4));
        }
        BOOST_TEST(f.vm->pauses.load() >= 1);
        // Every pause but perhaps the last was undone by a resume.
        BOOST_TEST(f.vm->resumes.load() >= f.vm->pauses.load() - 1);
        BOOST_TEST(f.vm->resumes.load() <= f.vm->pauses.load());
    });
}

BOOST_AUTO_TEST_CASE(a_vm_that_cannot_resume_fails_the_operation_with_a_typed_error_and_destroy_still_works) {
    fixture f(pausing_after(20ms));
    f.start();
    f.run([&]() -> asio::awaitable<void> {
        co_await sleep_for(200ms);
        BOOST_REQUIRE(f.sb.idle_paused());
        f.vm->refuse_resume = true;
        auto [ec, r] = co_await f.sb.async_exec(shell("echo no"), use_tuple);
        BOOST_TEST((ec == lifecycle_errc::invalid_state), ec.message());
        BOOST_TEST(f.sb.idle_paused());
        auto [dec] = co_await f.sb.async_destroy(use_tuple);  // stops a paused VM
        BOOST_TEST(!dec, dec.message());
        BOOST_TEST((f.sb.state() == microvm_state::destroyed));
    });
}
