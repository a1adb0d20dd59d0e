// Shared pieces of the kvm tests: configs for the built guest assets, and running a coroutine
// on an io_context with a hard time limit.
#pragma once

#include "mimobox/vm/kvm_backend.hpp"
#include "mimobox/vm/microvm_sandbox.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <fstream>
#include <dirent.h>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

namespace mimobox::test {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Waits under the harness are long: nested KVM under TCG is 10-100x slower than hardware.
inline constexpr auto guest_timeout = 120s;

/// For failure messages: what became of the VM (a stop aborts every operation) and what the
/// guest printed.
inline std::string vm_report(const vm::kvm_backend& vm) {
    return "; VM " + std::string(to_string(vm.state())) + ", guest console:\n" + vm.console_output();
}
inline std::string vm_report(vm::microvm_sandbox& sb) {
    return "\nsandbox " + std::string(to_string(sb.state())) + vm_report(sb.backend());
}

inline std::filesystem::path assets_dir() {
    const char* dir = std::getenv("MIMOBOX_VM_ASSETS_DIR");
    BOOST_REQUIRE_MESSAGE(dir && *dir, "MIMOBOX_VM_ASSETS_DIR is not set (run through kvm-run.sh)");
    return dir;
}

inline vm::microvm_config guest_config(std::string cmdline_extra, unsigned vcpus = 1, std::uint32_t memory_mib = 128) {
    vm::microvm_config cfg;
    cfg.vcpu_count = vcpus;
    cfg.memory_mib = memory_mib;
    cfg.kernel = assets_dir() / "bzImage";
    cfg.initramfs = assets_dir() / "initramfs.cpio.gz";
    cfg.cmdline_extra = std::move(cmdline_extra);
    return cfg;
}

/// Scale tests (many cycles, big transfers) run their full size by default and a smaller one
/// where MIMOBOX_TEST_SCALE=ci (set by .ci/run), so CI stays within its time budget; a leak
/// that exists shows in either, the full size only makes a slow one plainer.
inline int test_scale(int full, int ci) {
    const char* scale = std::getenv("MIMOBOX_TEST_SCALE");
    return scale && std::string(scale) == "ci" ? ci : full;
}

/// Entries of a /proc directory (/proc/self/fd, /proc/self/task): open fds, threads.
inline std::size_t count_entries(const char* dir) {
    std::size_t n = 0;
    if (DIR* d = ::opendir(dir)) {
        while (auto* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

/// This process's resident set.
inline std::size_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    f >> pages >> resident;
    return resident * 4096;
}

/// Runs a shell command that must succeed (exit 0) and returns its standard output.
inline asio::awaitable<std::string> shell_ok(vm::microvm_sandbox& sb, std::string command) {
    auto [ec, r] = co_await sb.async_exec_shell(std::move(command), asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_MESSAGE(!ec, "exec: " << ec.message() << vm_report(sb));
    BOOST_REQUIRE_MESSAGE(r.exit_code == 0, "exit " << r.exit_code << ": " << r.stderr_data);
    co_return r.stdout_data;
}

/// The host's wall clock, ns since the epoch (to compare with a guest's).
inline std::int64_t host_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Runs `body` to completion on a fresh io_context; fails the test if it throws or outlives `limit`.
template <class Body>
void run_coroutine(Body body, std::chrono::steady_clock::duration limit = 300s) {
    asio::io_context ctx;
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(ctx, body(ctx), [&](std::exception_ptr e) {
        done = true;
        error = e;
    });
    ctx.run_for(limit);
    BOOST_REQUIRE_MESSAGE(done, "test coroutine did not finish in time");
    if (error) std::rethrow_exception(error);
}

/// Waits for console text, failing after `limit`. If the VM stopped instead, says why on stderr.
inline asio::awaitable<boost::system::error_code> wait_console(vm::kvm_backend& vm, std::string text,
                                                              std::chrono::steady_clock::duration limit = guest_timeout) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    auto result = co_await (vm.async_wait_console(text, asio::as_tuple(asio::use_awaitable)) ||
                            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 1) co_return asio::error::timed_out;
    auto ec = std::get<0>(std::get<0>(result));
    if (ec && vm.state() == vm::kvm_lifecycle::stopped) {
        auto [wec, info] = co_await vm.async_wait_stopped(asio::as_tuple(asio::use_awaitable));
        std::fprintf(stderr, "VM stopped: %s (%s)\n", std::string(to_string(info.reason)).c_str(), info.detail.c_str());
    }
    co_return ec;
}

}  // namespace mimobox::test
