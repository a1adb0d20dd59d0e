// vm_pool under load: N idle sandboxes in one process on an io_context run by two threads, an
// exec storm across all of them, then churn (acquire, exec, release) at a fixed concurrency.
//   pool_bench [N] [CHURN_CONCURRENCY] [CHURN_OPS] [STORM_CONCURRENCY]
//   (defaults 50 8 200 32; MIMOBOX_VM_ASSETS_DIR names the assets; STORM_CONCURRENCY 0 skips
//   the storm and its peer, CHURN_OPS 0 the churn, and their keys are left out)
// A 256 MiB guest is booted and snapshotted; a vm_pool restores N sandboxes of it (min_idle and
// max_size N, idle ones paused). Once all N are idle and paused, the host's threads and
// proportional set size (Pss: the snapshot file's pages shared by N mappings count 1/N each)
// are read; memory per idle VM is the Pss growth over the fill divided by N. The storm acquires
// all N (served from idle: the pool's own latency) and runs `true` on every one, at most
// STORM_CONCURRENCY at once; each resumes for its exec and is paused again after it, so at most
// that many guests run (under the harness, hundreds of guests running at once starve each
// other for minutes). Its peer is as many `true`s on one running sandbox, as many at once, in
// the same run. Then all N are released, the pool refills to N idle, and CHURN_CONCURRENCY
// workers acquire, exec and release CHURN_OPS times in all (the pool refilling behind them).
// JSON: idle_vms, host_threads_idle, host_threads_storm, io_context_threads,
// host_kib_per_idle_vm, acquire_p50_us, acquire_p99_us (storm and churn acquisitions),
// exec_per_s (the storm), exec_storm_vs_one_vm_ratio, churn_ops_per_s, failures, and parts.
// Each phase's figures also go to stderr as it ends.
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/vm_assets.hpp>
#include <mimobox/vm/vm_pool.hpp>

#include "bench_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace asio = boost::asio;
using namespace mimobox::vm;
using mimobox::bench::clock_type;
using mimobox::bench::ms_since;
using mimobox::bench::pss_kib;
using mimobox::bench::threads;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t io_threads = 2;


double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// One JSON object on one line, keys in the order added (phases skipped leave theirs out).
class json_line {
public:
    void add(const char* key, const std::string& v) { field(key, "\"" + v + "\""); }
    void add(const char* key, double v, int decimals) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        field(key, buf);
    }
    template <class Integer>
        requires std::is_integral_v<Integer>
    void add(const char* key, Integer v) {
        field(key, std::to_string(v));
    }
    std::string str() const { return "{" + body_ + "}"; }

private:
    void field(const char* key, const std::string& value) {
        if (!body_.empty()) body_ += ",";
        body_ += "\"" + std::string(key) + "\":" + value;
    }
    std::string body_;
};

// Outside the coroutines: GCC 12 cannot compile a braced list of strings inside one.
std::vector<std::string> true_argv() { return {"true"}; }

asio::awaitable<void> sleep_ms(int ms) {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await t.async_wait(use_tuple);
}

// Everything below runs on one strand (the io_context has two threads), so the counters need
// no lock; the sandboxes' own work runs on their strands.
struct bench_state {
    std::size_t failures = 0;
    std::vector<double> acquire_us, churn_acquire_us;
    std::size_t max_threads = 0;
    bool sampling = false;
};

asio::awaitable<bool> exec_true(microvm_sandbox& sb, bench_state& b, const char* what) {
    auto [ec, r] = co_await sb.async_exec(true_argv(), use_tuple);
    if (ec || r.exit_code != 0) {
        ++b.failures;
        std::cerr << what << ": " << (ec ? ec.message() : "exit " + std::to_string(r.exit_code)) << "; VM "
                  << to_string(sb.backend().state()) << "\n";
        if (auto tail = sb.backend().console_output(); !tail.empty())
            std::cerr << "guest console (end):\n" << tail.substr(tail.size() > 3000 ? tail.size() - 3000 : 0) << "\n";
        co_return false;
    }
    co_return true;
}

// Runs the coroutines `make(0)` .. `make(n - 1)` on the current strand, at most `width` at
// once, and waits for them all.
template <class Make>
asio::awaitable<void> at_most(std::size_t width, std::size_t n, Make make) {
    auto ex = co_await asio::this_coro::executor;
    std::size_t next = 0, running = 0, done = 0;
    while (done < n) {
        while (running < width && next < n) {
            ++running;
            asio::co_spawn(ex, make(next++), [&](std::exception_ptr) {
                --running;
                ++done;
            });
        }
        co_await sleep_ms(2);
    }
}

asio::awaitable<void> sample_threads(bench_state& b) {
    while (b.sampling) {
        b.max_threads = std::max(b.max_threads, threads());
        co_await sleep_ms(20);
    }
}

asio::awaitable<int> run(std::size_t n, std::size_t churn_concurrency, std::size_t churn_ops, std::size_t storm_width) {
    auto ex = co_await asio::this_coro::executor;
    bench_state b;
    auto config = microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << "\n";
        co_return 2;
    }
    config->memory_mib = 256;
    auto [pec, parent] = co_await microvm_sandbox::async_create(ex, *config, use_tuple);
    if (pec) {
        std::cerr << "parent: " << pec.message() << "\n";
        co_return 1;
    }
    if (!co_await exec_true(parent, b, "parent")) co_return 1;

    // The storm's peer: as many `true`s on one running sandbox, as many at once.
    const auto peer_started = clock_type::now();
    if (storm_width > 0)
        co_await at_most(storm_width, n, [&](std::size_t) -> asio::awaitable<void> { co_await exec_true(parent, b, "peer exec"); });
    const double peer_ms = ms_since(peer_started);

    auto [sec, snap] = co_await parent.async_snapshot(use_tuple);
    if (sec) {
        std::cerr << "snapshot: " << sec.message() << "\n";
        co_return 1;
    }
    co_await parent.async_destroy(use_tuple);
    co_await sleep_ms(200);
    const double pss_before = pss_kib();
    const std::size_t threads_before = threads();

    vm_pool_config pc;
    pc.snapshot = std::move(snap);
    pc.min_idle = n;
    pc.max_size = n;  // nothing restores during the storm
    pc.refill_concurrency = 2;
    pc.max_idle_duration = std::chrono::milliseconds(0);      // no eviction during the run
    pc.health_check_interval = std::chrono::milliseconds(0);  // nor checks (they resume every VM)
    pc.acquire_timeout = std::chrono::minutes(10);
    pc.sandbox.ready_timeout = std::chrono::seconds(60);
    vm_pool pool(ex, pc);

    // Idle: all N made and paused.
    const auto fill_started = clock_type::now();
    while (pool.stats().idle < n || pool.stats().paused < n) {
        if (pool.stats().failures > 0 && pool.stats().failures >= n) break;
        co_await sleep_ms(50);
    }
    const double fill_ms = ms_since(fill_started);
    co_await sleep_ms(500);
    const auto idle_stats = pool.stats();
    const std::size_t threads_idle = threads();
    const double pss_idle = pss_kib();
    std::fprintf(stderr, "pool_bench: %zu idle (%zu paused) after %.0f ms; threads %zu -> %zu; Pss %.0f -> %.0f KiB (%.0f per VM)\n",
                 idle_stats.idle, idle_stats.paused, fill_ms, threads_before, threads_idle, pss_before, pss_idle,
                 (pss_idle - pss_before) / static_cast<double>(n));
    json_line out;
    out.add("bench", std::string("vm_pool"));
    out.add("n", n);
    out.add("guest_mib", config->memory_mib);
    out.add("idle_vms", idle_stats.idle);
    out.add("idle_paused", idle_stats.paused);
    out.add("io_context_threads", io_threads);
    out.add("host_threads_before", threads_before);
    out.add("host_threads_idle", threads_idle);
    out.add("host_kib_per_idle_vm", (pss_idle - pss_before) / static_cast<double>(n), 0);
    out.add("pss_before_kib", pss_before, 0);
    out.add("pss_idle_kib", pss_idle, 0);
    out.add("fill_ms", fill_ms, 0);

    // Storm: acquire every idle sandbox, then `true` on each, at most storm_width at once, each
    // paused again after. Skipped at STORM_CONCURRENCY 0.
    if (storm_width > 0) {
        std::vector<pooled_vm> held;
        held.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const auto t = clock_type::now();
            auto [ec, vm] = co_await pool.async_acquire(use_tuple);
            b.acquire_us.push_back(ms_since(t) * 1000);
            if (ec) {
                ++b.failures;
                std::cerr << "acquire: " << ec.message() << "\n";
                continue;
            }
            held.push_back(std::move(vm));
        }
        b.sampling = true;
        b.max_threads = threads();
        asio::co_spawn(ex, sample_threads(b), asio::detached);
        const auto storm_started = clock_type::now();
        co_await at_most(storm_width, held.size(), [&](std::size_t i) -> asio::awaitable<void> {
            if (!co_await exec_true(held[i].sandbox(), b, "storm exec")) co_return;
            // Paused again, as its idle_pause_after would (the bench stops short of the timer).
            auto [ec] = co_await held[i].sandbox().backend().async_pause(use_tuple);
            if (ec) {
                ++b.failures;
                std::cerr << "storm pause: " << ec.message() << "\n";
            }
        });
        const double storm_ms = ms_since(storm_started);
        b.sampling = false;
        const double exec_per_s = static_cast<double>(held.size()) / (storm_ms / 1000);
        const double peer_per_s = static_cast<double>(n) / (peer_ms / 1000);
        std::fprintf(stderr, "pool_bench: storm of %zu execs (%zu at once) in %.0f ms, %zu threads at most\n", held.size(),
                     storm_width, storm_ms, b.max_threads);
        out.add("host_threads_storm", b.max_threads);
        out.add("storm_concurrency", storm_width);
        out.add("storm_acquire_p50_us", percentile(b.acquire_us, 0.5), 0);
        out.add("storm_acquire_p99_us", percentile(b.acquire_us, 0.99), 0);
        out.add("exec_per_s", exec_per_s, 1);
        out.add("one_vm_exec_per_s", peer_per_s, 1);
        out.add("exec_storm_vs_one_vm_ratio", exec_per_s / peer_per_s, 3);
        held.clear();  // every VM destroyed; the pool refills to N idle
        const auto refill_started = clock_type::now();
        while (pool.stats().idle < n || pool.stats().paused < n) co_await sleep_ms(50);
        const double refill_ms = ms_since(refill_started);
        std::fprintf(stderr, "pool_bench: refilled in %.0f ms\n", refill_ms);
        out.add("refill_ms", refill_ms, 0);
    }

    // Churn: CHURN_CONCURRENCY workers acquire, exec and release, CHURN_OPS times in all.
    if (churn_ops > 0) {
        std::size_t ops_left = churn_ops;
        const auto churn_started = clock_type::now();
        co_await at_most(churn_concurrency, churn_concurrency, [&](std::size_t) -> asio::awaitable<void> {
            while (ops_left > 0) {
                --ops_left;
                const auto t = clock_type::now();
                auto [ec, vm] = co_await pool.async_acquire(use_tuple);
                b.churn_acquire_us.push_back(ms_since(t) * 1000);
                if (ec) {
                    ++b.failures;
                    std::cerr << "churn acquire: " << ec.message() << "\n";
                    continue;
                }
                co_await exec_true(vm.sandbox(), b, "churn exec");
            }
        });
        const double churn_ms = ms_since(churn_started);
        out.add("churn_concurrency", churn_concurrency);
        out.add("churn_ops", churn_ops);
        out.add("churn_ops_per_s", static_cast<double>(churn_ops) / (churn_ms / 1000), 1);
        out.add("churn_acquire_p50_us", percentile(b.churn_acquire_us, 0.5), 0);
        out.add("churn_acquire_p99_us", percentile(b.churn_acquire_us, 0.99), 0);
    }
    const auto end_stats = pool.stats();
    co_await pool.async_stop(use_tuple);

    auto all_acquires = b.acquire_us;
    all_acquires.insert(all_acquires.end(), b.churn_acquire_us.begin(), b.churn_acquire_us.end());
    if (!all_acquires.empty()) {
        out.add("acquire_p50_us", percentile(all_acquires, 0.5), 0);
        out.add("acquire_p99_us", percentile(all_acquires, 0.99), 0);
    }
    const std::size_t failures = b.failures + end_stats.failures;
    out.add("pool_hits", end_stats.hits);
    out.add("pool_misses", end_stats.misses);
    out.add("pool_created", end_stats.created);
    out.add("failures", failures);
    std::printf("%s\n", out.str().c_str());
    co_return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
    const std::size_t churn_concurrency = argc > 2 ? std::max(1, std::atoi(argv[2])) : 8;
    const std::size_t churn_ops = argc > 3 ? std::max(0, std::atoi(argv[3])) : 200;
    const std::size_t storm_width = argc > 4 ? std::max(0, std::atoi(argv[4])) : 32;
    asio::io_context ctx;
    auto work = asio::make_work_guard(ctx);
    int rc = 1;
    asio::co_spawn(asio::make_strand(ctx), run(n, churn_concurrency, churn_ops, storm_width), [&](std::exception_ptr e, int r) {
        if (e) std::cerr << "pool_bench failed with an exception\n";
        rc = e ? 1 : r;
        work.reset();
    });
    std::vector<std::thread> pool;
    for (std::size_t i = 1; i < io_threads; ++i) pool.emplace_back([&] { ctx.run(); });
    ctx.run();
    for (auto& t : pool) t.join();
    return rc;
}
