// What every example does around its real work: find the guest assets, boot a sandbox (printing
// why if it cannot), and run a coroutine on an io_context. Read 01_run_command.cpp first.
#pragma once

#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/vm_assets.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>
#include <optional>

namespace examples {

namespace asio = boost::asio;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// A ready sandbox booted from MIMOBOX_VM_ASSETS_DIR (or ~/.mimobox/assets), or nothing.
inline asio::awaitable<std::optional<mimobox::vm::microvm_sandbox>> open_sandbox(mimobox::vm::sandbox_config options) {
    auto config = mimobox::vm::microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << " (set MIMOBOX_VM_ASSETS_DIR)\n";
        co_return std::nullopt;
    }
    auto [ec, sandbox] = co_await mimobox::vm::microvm_sandbox::async_create(co_await asio::this_coro::executor, *config,
                                                                             options, use_tuple);
    if (ec) {
        std::cerr << "sandbox: " << ec.message() << "\n";
        co_return std::nullopt;
    }
    co_return std::move(sandbox);
}

/// Runs `program` (an awaitable<int>) to completion; its value is the exit status.
inline int run_example(asio::awaitable<int> program) {
    asio::io_context ctx;
    int status = 1;
    asio::co_spawn(ctx, std::move(program), [&](std::exception_ptr e, int s) {
        if (e) std::rethrow_exception(e);
        status = s;
    });
    ctx.run();
    return status;
}

}  // namespace examples
