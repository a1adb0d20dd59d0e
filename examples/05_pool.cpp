// 05: a server's pool of sandboxes. One sandbox is booted and prepared once (here: a file every
// user should find), snapshotted, and a vm_pool keeps a few restores of it ready and paused.
// Each "request" acquires one, runs its command, and lets it go: the VM is destroyed, never
// reused, so nothing one request did reaches the next. Two threads run the io_context; idle
// sandboxes hold none.
//
//   MIMOBOX_VM_ASSETS_DIR=build/guest 05_pool [REQUESTS]     (default 6)
#include <mimobox/vm/error.hpp>
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/vm_assets.hpp>
#include <mimobox/vm/vm_pool.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

namespace asio = boost::asio;
using namespace mimobox::vm;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One request: a sandbox of its own for one shell command.
asio::awaitable<bool> handle(vm_pool& pool, int request) {
    const auto start = std::chrono::steady_clock::now();
    auto [ec, vm] = co_await pool.async_acquire(use_tuple);
    if (ec) {  // pool_errc::acquire_timeout when the pool stayed full, stopped, unhealthy...
        std::cout << "request " << request << ": no sandbox: " << ec.message() << "\n";
        co_return false;
    }
    const auto waited = std::chrono::steady_clock::now() - start;
    // Each request leaves something behind; the next one never sees it.
    auto command = "cat /etc/motd; ls /tmp; touch /tmp/left-by-" + std::to_string(request) + "; echo $((" +
                   std::to_string(request) + " * " + std::to_string(request) + "))";
    auto [xec, r] = co_await vm.sandbox().async_exec_shell(std::move(command), use_tuple);
    std::cout << "request " << request << " (waited "
              << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms): "
              << (xec ? xec.message() + "\n" : r.stdout_data);
    co_return !xec && r.exit_code == 0;
    // `vm` goes here: its VM is destroyed and the pool starts a fresh one.
}

asio::awaitable<int> serve(int requests) {
    auto ex = co_await asio::this_coro::executor;
    auto config = microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << "\n";
        co_return 2;
    }
    config->memory_mib = 128;

    // The template every sandbox starts from.
    auto [cec, base] = co_await microvm_sandbox::async_create(ex, *config, use_tuple);
    if (cec) {
        std::cerr << "boot: " << cec.message() << "\n";
        co_return 1;
    }
    co_await base.async_write_file("/etc/motd", "prepared once, restored for every request\n", use_tuple);
    vm_pool_config pool_config;
    auto [sec, snapshot] = co_await base.async_snapshot(use_tuple);
    if (sec) {
        std::cerr << "snapshot: " << sec.message() << "\n";
        co_return 1;
    }
    pool_config.snapshot = std::move(snapshot);
    co_await base.async_destroy(use_tuple);
    pool_config.min_idle = 2;  // ready and paused
    pool_config.max_size = 4;  // at most this many at once, handed out or not
    pool_config.acquire_timeout = std::chrono::seconds(120);
    vm_pool pool(ex, pool_config);

    // Let it fill, so the first two requests are served from idle; the others wait for fresh
    // sandboxes, at most max_size at a time.
    while (pool.stats().paused < pool_config.min_idle) {
        asio::steady_timer t(ex, std::chrono::milliseconds(50));
        co_await t.async_wait(use_tuple);
    }
    std::atomic<int> ok = 0, done = 0;
    for (int i = 1; i <= requests; ++i)
        asio::co_spawn(ex, handle(pool, i), [&](std::exception_ptr e, bool good) {
            ok += !e && good;
            ++done;
        });
    while (done < requests) {
        asio::steady_timer t(ex, std::chrono::milliseconds(50));
        co_await t.async_wait(use_tuple);
    }
    const auto s = pool.stats();
    std::cout << ok << " of " << requests << " requests ran; pool: " << s.hits << " hits, " << s.misses << " misses, "
              << s.created << " sandboxes started, " << s.failures << " failures\n";
    co_await pool.async_stop(use_tuple);
    co_return ok == requests ? 0 : 1;
}

int main(int argc, char** argv) {
    const int requests = argc > 1 ? std::max(1, std::atoi(argv[1])) : 6;
    asio::io_context ctx;
    int rc = 1;
    // A strand: the serving coroutine and the requests' completions touch shared counters.
    asio::co_spawn(asio::make_strand(ctx), serve(requests), [&](std::exception_ptr e, int r) { rc = e ? 1 : r; });
    std::thread second([&] { ctx.run(); });
    ctx.run();
    second.join();
    return rc;
}
