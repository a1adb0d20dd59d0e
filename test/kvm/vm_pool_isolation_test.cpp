// vm_pool with real guests: what one user leaves in a sandbox (files anywhere, a sourced
// environment, a process left running) never reaches the next; capacity, timeouts and a stop
// with acquisitions waiting; idle sandboxes paused.
#include "mimobox/vm/vm_pool.hpp"

#define BOOST_TEST_MODULE vm_pool_isolation
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vm_test_support.hpp"

using namespace mimobox;
using namespace mimobox::test;
using boost::system::error_code;
using vm::microvm_sandbox;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A pool restoring from a snapshot of a freshly started sandbox.
asio::awaitable<vm::vm_pool_config> snapshot_pool_config(asio::io_context& ctx) {
    microvm_sandbox parent(ctx.get_executor(), guest_config("", 1, 128), vm::sandbox_config());
    auto [ec] = co_await parent.async_start(use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "parent: " << ec.message() << vm_report(parent));
    auto [sec, snap] = co_await parent.async_snapshot(use_tuple);
    BOOST_REQUIRE_MESSAGE(!sec, "snapshot: " << sec.message());
    vm::vm_pool_config c;
    c.snapshot = std::move(snap);
    c.min_idle = 1;
    c.max_size = 2;
    c.acquire_timeout = std::chrono::seconds(120);
    c.health_check_interval = std::chrono::milliseconds(0);
    c.max_idle_duration = std::chrono::milliseconds(0);
    co_return c;
}

asio::awaitable<void> settle(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

}  // namespace

BOOST_AUTO_TEST_CASE(what_one_user_leaves_never_reaches_the_next) {
    run_coroutine(
        [](asio::io_context& ctx) -> asio::awaitable<void> {
            vm::vm_pool pool(ctx.get_executor(), co_await snapshot_pool_config(ctx));
            auto [aec, a] = co_await pool.async_acquire(use_tuple);
            BOOST_REQUIRE_MESSAGE(!aec, "acquire A: " << aec.message());
            co_await shell_ok(a.sandbox(),
                              "echo a > /tmp/x; mkdir -p /root; echo a > /root/y; echo 'export LEAK=user-a' >> /root/.profile;"
                              " . /root/.profile; setsid sleep 1000 </dev/null >/dev/null 2>&1 &");
            BOOST_TEST(co_await shell_ok(a.sandbox(), "ps -o args | grep -c '^sleep 1000' || true") == "1\n");
            a.release();
            auto [bec, b] = co_await pool.async_acquire(use_tuple);
            BOOST_REQUIRE_MESSAGE(!bec, "acquire B: " << bec.message());
            BOOST_TEST(co_await shell_ok(b.sandbox(), "cat /tmp/x /root/y 2>/dev/null || echo none") == "none\n");
            BOOST_TEST(co_await shell_ok(b.sandbox(), "cat /root/.profile 2>/dev/null | grep -c LEAK || true") == "0\n");
            BOOST_TEST(co_await shell_ok(b.sandbox(), "[ -f /root/.profile ] && . /root/.profile; echo \"[$LEAK]\"") == "[]\n");
            BOOST_TEST(co_await shell_ok(b.sandbox(), "ps -o args | grep -c '^sleep 1000' || true") == "0\n");
            const auto s = pool.stats();
            BOOST_TEST(s.created >= 2u);
            BOOST_TEST(s.in_use == 1u);
            co_await pool.async_stop(use_tuple);
        },
        std::chrono::seconds(600));
}

BOOST_AUTO_TEST_CASE(idle_sandboxes_are_paused_and_capacity_bounds_acquisitions_until_stop) {
    run_coroutine(
        [](asio::io_context& ctx) -> asio::awaitable<void> {
            auto config = co_await snapshot_pool_config(ctx);
            config.max_size = 1;
            config.acquire_timeout = std::chrono::milliseconds(1500);
            vm::vm_pool pool(ctx.get_executor(), std::move(config));
            // The one idle sandbox pauses once nothing starts: no vCPU thread.
            for (int i = 0; i < 600 && pool.stats().idle < 1; ++i) co_await settle(std::chrono::milliseconds(100));
            BOOST_REQUIRE(pool.stats().idle == 1u);
            co_await settle(std::chrono::milliseconds(1000));  // its pause completes
            auto [aec, a] = co_await pool.async_acquire(use_tuple);
            BOOST_REQUIRE_MESSAGE(!aec, aec.message());
            BOOST_TEST(a.sandbox().idle_paused());
            BOOST_TEST(co_await shell_ok(a.sandbox(), "echo up") == "up\n");  // resumed by its first operation
            // Full: an acquisition times out, another waits until the stop.
            auto [tec, none] = co_await pool.async_acquire(use_tuple);
            BOOST_TEST((tec == vm::pool_errc::acquire_timeout), tec.message());
            error_code waited;
            bool done = false;
            asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
                auto [ec, v] = co_await pool.async_acquire(use_tuple);
                waited = ec;
                done = true;
            }, asio::detached);
            co_await settle(std::chrono::milliseconds(200));
            auto [sec] = co_await pool.async_stop(use_tuple);
            BOOST_TEST(!sec);
            for (int i = 0; i < 50 && !done; ++i) co_await settle(std::chrono::milliseconds(20));
            BOOST_TEST((waited == vm::pool_errc::stopped), waited.message());
            BOOST_TEST(co_await shell_ok(a.sandbox(), "echo still") == "still\n");  // the user's stays theirs
        },
        std::chrono::seconds(600));
}
