// Boots a microVM and streams its serial console to stdout until the guest stops or the time
// limit passes. The kernel and initramfs come from MIMOBOX_VM_ASSETS_DIR (bzImage,
// initramfs.cpio.gz).   boot_console [SECONDS] [VCPUS] [EXTRA KERNEL ARGUMENTS...]
#include <mimobox/vm/kvm_backend.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using namespace mimobox::vm;

int main(int argc, char** argv) {
    const char* assets = std::getenv("MIMOBOX_VM_ASSETS_DIR");
    if (!assets) {
        std::cerr << "usage: MIMOBOX_VM_ASSETS_DIR=DIR boot_console [SECONDS] [VCPUS] [EXTRA KERNEL ARGUMENTS...]\n";
        return 2;
    }
    microvm_config cfg;
    cfg.kernel = std::filesystem::path(assets) / "bzImage";
    cfg.initramfs = std::filesystem::path(assets) / "initramfs.cpio.gz";
    int seconds = argc > 1 ? std::stoi(argv[1]) : 10;
    cfg.vcpu_count = argc > 2 ? static_cast<unsigned>(std::stoi(argv[2])) : 1;
    for (int i = 3; i < argc; ++i) cfg.cmdline_extra += std::string(argv[i]) + " ";

    asio::io_context ctx;
    kvm_backend vm(ctx.get_executor(), cfg);
    vm.set_console_callback([](std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); std::fflush(stdout); });
    int status = 0;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        auto start = std::chrono::steady_clock::now();
        auto [ec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
        if (ec) {
            std::cerr << "boot failed: " << ec.message() << "\n";
            status = 1;
            co_return;
        }
        asio::steady_timer limit(ctx, std::chrono::seconds(seconds));
        limit.async_wait([&](auto) { vm.async_stop(asio::detached); });
        auto [wec, info] = co_await vm.async_wait_stopped(asio::as_tuple(asio::use_awaitable));
        limit.cancel();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        std::cerr << "\nvm stopped after " << ms.count() << " ms: " << to_string(info.reason) << " (" << info.detail << ")\n";
    }, asio::detached);
    ctx.run();
    return status;
}
