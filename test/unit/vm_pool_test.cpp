// vm_pool without KVM: its sandboxes come from a source of microvm_sandboxes on in-process VMs
// (the real agent code over socket pairs), which counts what it made and can be told to fail.
#include "mimobox/vm/vm_pool.hpp"

#define BOOST_TEST_MODULE vm_pool
#include <boost/test/unit_test.hpp>

#include "in_process_vm.hpp"
#include "mimobox/vm/error.hpp"
#include "pool/vm_source.hpp"
#include "run_body.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <set>

using namespace mimobox::vm;
using mimobox::test::in_process_vm;
using mimobox::test::shell;
namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Sandboxes on in-process VMs; every one gets a hostname of its own ("box-N").
class test_source final : public detail::vm_source {
public:
    explicit test_source(asio::io_context& ctx) : ctx_(ctx) {}
    asio::awaitable<std::tuple<error_code, std::unique_ptr<pooled_vm::holder>>> make() override {
        if (fail_next > 0) {
            --fail_next;
            co_return std::tuple{error_code(sandbox_errc::ready_timeout), std::unique_ptr<pooled_vm::holder>()};
        }
        // What was idle when this start began, and how much of it was paused (batches).
        // Only where no sandbox is destroyed: `vms` keeps pointers to the dead too.
        if (track_batches) {
            std::size_t paused_before = 0;
            for (auto* vm : vms) paused_before += vm->pauses > 0;
            started_after_paused.push_back(paused_before);
        }
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
        struct leave {
            int& n;
            ~leave() { --n; }
        } leaving{in_flight};
        sandbox_config c;
        c.hostname = "box-" + std::to_string(++made);
        in_process_vm* vm = nullptr;
        auto sb = mimobox::test::make_in_process_sandbox(ctx_, c, vm);
        vms.push_back(vm);
        auto [ec] = co_await sb.async_start(use_tuple);
        if (ec) co_return std::tuple{ec, std::unique_ptr<pooled_vm::holder>()};
        auto h = std::make_unique<pooled_vm::holder>();
        h->booted = std::move(sb);
        co_return std::tuple{error_code{}, std::move(h)};
    }
    int made = 0;
    int fail_next = 0;
    int in_flight = 0, max_in_flight = 0;
    bool track_batches = false;
    std::vector<std::size_t> started_after_paused;  // per start: VMs paused by then
    std::vector<in_process_vm*> vms;  // valid while their sandboxes live

private:
    asio::io_context& ctx_;
};

struct fixture {
    asio::io_context ctx;
    test_source* source = nullptr;
    std::unique_ptr<vm_pool> pool;

    explicit fixture(vm_pool_config config) {
        auto s = std::make_unique<test_source>(ctx);
        source = s.get();
        pool = std::make_unique<vm_pool>(ctx.get_executor(), std::move(config), std::move(s));
    }
    // The pool goes first, then whatever it still holds finishes on the context, before the
    // context (which the in-process VMs post to) goes.
    ~fixture() {
        pool.reset();
        ctx.restart();
        ctx.run_for(std::chrono::seconds(10));
    }
    template <class Body>
    void run(Body body) {
        mimobox::test::run_body(ctx, std::move(body));
    }
};

vm_pool_config small(std::size_t min_idle, std::size_t max_size) {
    vm_pool_config c;
    c.min_idle = min_idle;
    c.max_size = max_size;
    c.acquire_timeout = 2s;
    c.max_idle_duration = 0ms;
    c.health_check_interval = 0ms;
    return c;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

asio::awaitable<void> wait_until(std::function<bool()> done, std::chrono::milliseconds limit = 5000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) co_await sleep_for(5ms);
    BOOST_REQUIRE(done());
}

// The sandbox runs a command (its agent answers).
asio::awaitable<bool> answers(microvm_sandbox& sb) {
    auto [ec, r] = co_await sb.async_exec(shell("echo ok"), use_tuple);
    BOOST_TEST(!ec, ec.message());
    co_return !ec && r.stdout_data == "ok\n";
}

}  // namespace

BOOST_AUTO_TEST_CASE(it_fills_to_min_idle_pauses_them_and_hands_each_out_once) {
    fixture f(small(2, 4));
    f.run([&]() -> asio::awaitable<void> {
        co_await wait_until([&] { return f.pool->stats().idle == 2 && f.source->vms.size() == 2; });
        // Idle sandboxes are paused once nothing else starts.
        co_await wait_until([&] { return f.source->vms[0]->pauses.load() == 1 && f.source->vms[1]->pauses.load() == 1; });
        auto [ec, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST(a.valid());
        BOOST_TEST(co_await answers(a.sandbox()));  // resumed by its first operation
        BOOST_TEST(f.source->vms[0]->resumes.load() + f.source->vms[1]->resumes.load() == 1);
        // The pool refills behind the one handed out.
        co_await wait_until([&] { return f.pool->stats().idle == 2; });
        const auto s = f.pool->stats();
        BOOST_TEST(s.in_use == 1u);
        BOOST_TEST(s.hits == 1u);
        BOOST_TEST(s.created == 3u);
    });
}

BOOST_AUTO_TEST_CASE(a_released_sandbox_is_destroyed_and_replaced_never_handed_out_again) {
    fixture f(small(1, 1));
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE(!ec1);
        auto [wec] = co_await a.sandbox().async_write_file("/tmp/mimobox-vm-pool-test-marker", std::string("user A"), use_tuple);
        BOOST_TEST(!wec);
        a.release();
        BOOST_TEST(!a.valid());
        auto [ec2, b] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec2, ec2.message());
        // A fresh sandbox on a fresh VM (the in-process VMs share the test host's files, so
        // isolation itself is the kvm test's to show).
        BOOST_TEST(f.source->made == 2);
        BOOST_TEST((b.sandbox().state() == microvm_state::ready));
        std::remove("/tmp/mimobox-vm-pool-test-marker");
    });
}

BOOST_AUTO_TEST_CASE(operations_through_a_released_or_moved_from_handle_fail_with_invalid_state) {
    fixture f(small(1, 1));
    f.run([&]() -> asio::awaitable<void> {
        auto [ec, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE(!ec);
        pooled_vm b = std::move(a);
        BOOST_TEST(!a.valid());
        BOOST_TEST((a.sandbox().state() == microvm_state::destroyed));
        auto [moved_ec, moved_r] = co_await a.sandbox().async_exec(shell("echo no"), use_tuple);
        BOOST_TEST((moved_ec == lifecycle_errc::invalid_state), moved_ec.message());
        BOOST_TEST(co_await answers(b.sandbox()));
        b.release();
        auto [released_ec, released_r] = co_await b.sandbox().async_exec(shell("echo no"), use_tuple);
        BOOST_TEST((released_ec == lifecycle_errc::invalid_state), released_ec.message());
        auto [file_ec, content] = co_await b.sandbox().async_read_file("/etc/hostname", use_tuple);
        BOOST_TEST((file_ec == lifecycle_errc::invalid_state), file_ec.message());
        pooled_vm never;  // as a failed acquisition hands out
        auto [never_ec] = co_await never.sandbox().async_destroy(use_tuple);
        BOOST_TEST((never_ec == lifecycle_errc::invalid_state), never_ec.message());
    });
}

BOOST_AUTO_TEST_CASE(with_every_sandbox_out_an_acquisition_waits_for_a_release_or_times_out) {
    auto c = small(0, 1);
    c.acquire_timeout = 200ms;
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE(!ec1);
        const auto t0 = std::chrono::steady_clock::now();
        auto [ec2, none] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST((ec2 == pool_errc::acquire_timeout), ec2.message());
        BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 200ms));
        BOOST_TEST(!none.valid());
        // A release during the wait serves it.
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
            co_await sleep_for(50ms);
            a.release();
        }, asio::detached);
        auto [ec3, b] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST(!ec3, ec3.message());
        BOOST_TEST(f.pool->stats().misses >= 1u);
    });
}

BOOST_AUTO_TEST_CASE(without_a_wait_a_full_pool_is_exhausted_at_once) {
    auto c = small(0, 1);
    c.acquire_timeout = 0ms;
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, a] = co_await f.pool->async_acquire(use_tuple);  // capacity left: it waits for the start
        BOOST_REQUIRE_MESSAGE(!ec1, ec1.message());
        auto [ec2, none] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST((ec2 == pool_errc::exhausted), ec2.message());
    });
}

BOOST_AUTO_TEST_CASE(a_cancelled_acquisition_completes_with_operation_aborted_and_takes_nothing) {
    fixture f(small(0, 1));
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE(!ec1);
        asio::cancellation_signal cancel;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
            co_await sleep_for(30ms);
            cancel.emit(asio::cancellation_type::terminal);
        }, asio::detached);
        auto [ec2, none] = co_await f.pool->async_acquire(asio::bind_cancellation_slot(cancel.slot(), use_tuple));
        BOOST_TEST((ec2 == asio::error::operation_aborted), ec2.message());
        a.release();
        auto [ec3, b] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST(!ec3, ec3.message());
    });
}

BOOST_AUTO_TEST_CASE(idle_sandboxes_past_max_idle_duration_are_replaced) {
    auto c = small(1, 2);
    c.max_idle_duration = 100ms;
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        co_await wait_until([&] { return f.pool->stats().evictions >= 2; });
        BOOST_TEST(f.source->made >= 3);
        co_await wait_until([&] { return f.pool->stats().idle == 1; });
    });
}

BOOST_AUTO_TEST_CASE(a_sandbox_whose_vm_died_while_idle_fails_its_health_check_and_is_never_handed_out) {
    auto c = small(1, 2);
    c.health_check_interval = 50ms;
    c.pause_idle = false;
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        co_await wait_until([&] { return f.pool->stats().idle == 1; });
        // As a guest that panicked: the VM is gone (the pointer is not used again: the pool
        // destroys that sandbox).
        f.source->vms[0]->async_stop(asio::detached);
        co_await wait_until([&] { return f.pool->stats().failures >= 1 && f.pool->stats().idle == 1 && f.source->made == 2; });
        auto [ec, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, ec.message());
        BOOST_TEST((a.sandbox().state() == microvm_state::ready));
        BOOST_TEST(co_await answers(a.sandbox()));
    });
}

BOOST_AUTO_TEST_CASE(with_pause_idle_sandboxes_start_in_batches_and_each_batch_is_paused_before_the_next_starts) {
    auto c = small(6, 6);
    c.refill_concurrency = 2;
    fixture f(c);
    f.source->track_batches = true;  // before the pool's first start, which is posted
    f.run([&]() -> asio::awaitable<void> {
        co_await wait_until([&] { return f.pool->stats().paused == 6; });
        BOOST_TEST(f.source->made == 6);
        BOOST_TEST(f.source->max_in_flight == 2);
        // Starts 0,1: nothing before; 2,3: after 0 and 1 were paused; 4,5: after 0-3.
        const std::vector<std::size_t> expected{0, 0, 2, 2, 4, 4};
        BOOST_TEST(f.source->started_after_paused == expected, boost::test_tools::per_element());
    });
}

BOOST_AUTO_TEST_CASE(an_idle_sandbox_whose_vm_stopped_is_replaced_within_a_second_without_health_checks) {
    auto c = small(1, 2);  // health checks and eviction off
    c.pause_idle = false;
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        co_await wait_until([&] { return f.pool->stats().idle == 1; });
        f.source->vms[0]->async_stop(asio::detached);
        const auto stopped = std::chrono::steady_clock::now();
        co_await wait_until([&] { return f.pool->stats().failures == 1 && f.pool->stats().idle == 1 && f.source->made == 2; });
        BOOST_TEST((std::chrono::steady_clock::now() - stopped < 2500ms));  // the pool's 1 s maintenance tick, with room
        BOOST_TEST(f.pool->stats().hits + f.pool->stats().misses == 0u);  // nobody was handed the dead one
    });
}

BOOST_AUTO_TEST_CASE(a_source_that_keeps_failing_makes_waiters_fail_unhealthy_and_recovers_when_asked_again) {
    auto c = small(0, 2);
    c.max_consecutive_failures = 2;
    fixture f(c);
    f.source->fail_next = 2;
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, none] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST((ec1 == pool_errc::unhealthy), ec1.message());
        BOOST_TEST(f.pool->stats().failures == 2u);
        auto [ec2, a] = co_await f.pool->async_acquire(use_tuple);  // the source works again
        BOOST_TEST(!ec2, ec2.message());
    });
}

BOOST_AUTO_TEST_CASE(stopping_fails_waiting_acquisitions_destroys_idle_sandboxes_and_refuses_new_ones) {
    fixture f(small(1, 1));
    f.run([&]() -> asio::awaitable<void> {
        auto [ec1, a] = co_await f.pool->async_acquire(use_tuple);
        BOOST_REQUIRE(!ec1);
        auto ex = co_await asio::this_coro::executor;
        error_code waited;
        bool done = false;
        asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
            auto [ec, none] = co_await f.pool->async_acquire(use_tuple);
            waited = ec;
            done = true;
        }, asio::detached);
        co_await sleep_for(20ms);
        auto [sec] = co_await f.pool->async_stop(use_tuple);
        BOOST_TEST(!sec);
        co_await wait_until([&] { return done; });
        BOOST_TEST((waited == pool_errc::stopped), waited.message());
        auto [ec3, none] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST((ec3 == pool_errc::stopped));
        BOOST_TEST((a.sandbox().state() == microvm_state::ready));  // the user's stays theirs
        BOOST_TEST(f.pool->stats().idle == 0u);
    });
}

BOOST_AUTO_TEST_CASE(a_config_that_cannot_work_fails_every_acquisition) {
    auto c = small(3, 2);  // min_idle above max_size
    fixture f(c);
    f.run([&]() -> asio::awaitable<void> {
        auto [ec, none] = co_await f.pool->async_acquire(use_tuple);
        BOOST_TEST((ec == pool_errc::invalid_config), ec.message());
        BOOST_TEST(f.source->made == 0);
    });
}
