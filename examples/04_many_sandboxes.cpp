// 04: many sandboxes at once on one io_context and one thread: each boots, runs a command and
// is destroyed, concurrently. Nothing blocks the thread: vCPUs run on their own threads, and
// every device, connection and operation is a coroutine on the caller's io_context.
//
//   MIMOBOX_VM_ASSETS_DIR=build/guest 04_many_sandboxes [COUNT]     (default 4)
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/vm_assets.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <iostream>

namespace asio = boost::asio;
using namespace mimobox::vm;

asio::awaitable<bool> one(int index, microvm_config config) {
    constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
    const auto start = std::chrono::steady_clock::now();
    config.vsock_cid = 3 + static_cast<std::uint32_t>(index);  // not required (devices are per VM); tidy in logs
    sandbox_config options;
    options.hostname = "box-" + std::to_string(index);
    auto [ec, sandbox] = co_await microvm_sandbox::async_create(co_await asio::this_coro::executor, config, options, use_tuple);
    if (ec) {
        std::cout << "sandbox " << index << ": " << ec.message() << "\n";
        co_return false;
    }
    std::vector<std::string> command;
    command.push_back("hostname");
    guest_exec_options exec_options;
    auto [xec, result] = co_await sandbox.async_exec(std::move(command), exec_options, use_tuple);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    std::cout << "sandbox " << index << " answered " << (xec ? xec.message() + "\n" : result.stdout_data) << "  after "
              << ms.count() << " ms\n";
    co_await sandbox.async_destroy(use_tuple);
    co_return !xec && result.exit_code == 0;
}

int main(int argc, char** argv) {
    const int count = argc > 1 ? std::atoi(argv[1]) : 4;
    auto config = microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << "\n";
        return 2;
    }
    config->memory_mib = 128;
    asio::io_context ctx;  // run() on this one thread only
    int ok = 0;
    for (int i = 0; i < count; ++i)
        asio::co_spawn(ctx, one(i, *config), [&](std::exception_ptr e, bool good) {
            if (e) std::rethrow_exception(e);
            ok += good;
        });
    ctx.run();
    std::cout << ok << " of " << count << " sandboxes ran their command\n";
    return ok == count ? 0 : 1;
}
