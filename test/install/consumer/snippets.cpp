// The documentation's code, compiled verbatim against the installed package and run in a VM:
// the README's "Using the library" block and the opening examples of microvm_sandbox.hpp,
// microvm_snapshot.hpp and restore_pool.hpp (copied in by extract-snippets.sh), plus the other `{}`-argument forms users write inside co_await. Built
// with ASan and UBSan, so a temporary that GCC 12 mishandles in a co_await operand (a bad free,
// a string pointing into a dead frame) fails the run instead of passing by luck.
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/microvm_snapshot.hpp>
#include <mimobox/vm/restore_pool.hpp>
#include <mimobox/vm/vm_pool.hpp>
#include <mimobox/vm/vm_assets.hpp>

#include <boost/system/system_error.hpp>

#include <filesystem>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>

#include <unistd.h>

namespace readme {
#include "readme_using.inc"
}  // namespace readme

namespace header_example {
using namespace mimobox::vm;
namespace asio = boost::asio;

asio::awaitable<std::string> run(asio::any_io_executor ex, microvm_config vm_config) {
#include "sandbox_header_example.inc"
    if (r.exit_code != 0 || limited.exit_code != 0) throw std::runtime_error("uname failed");
    // The remaining `{}` forms, on the same sandbox.
    auto shell = co_await sb.async_exec_shell("echo braces", guest_exec_options{}, asio::use_awaitable);
    auto stream = co_await sb.async_exec_stream(argv, {}, asio::use_awaitable);
    std::string streamed;
    for (;;) {
        auto ev = co_await stream.async_next(asio::use_awaitable);
        if (ev.kind == stream_event_kind::stdout_data) streamed += ev.data;
        if (ev.kind == stream_event_kind::exit) break;
    }
    co_await sb.async_mkdir("/tmp/snippet/dir", {.parents = true}, asio::use_awaitable);
    co_await sb.async_remove("/tmp/snippet", {.recursive = true}, asio::use_awaitable);
    const bool gone = !co_await sb.async_exists("/tmp/snippet", asio::use_awaitable);
    co_return r.stdout_data + "|" + limited.stdout_data + "|" + shell.stdout_data + "|" + streamed + "|" +
        (gone ? "removed" : "still there");
}
}  // namespace header_example

namespace snapshot_example {
using namespace mimobox::vm;
namespace asio = boost::asio;

// The header's example with what it assumes around it: a ready `sandbox`, an executor `ex`,
// a directory `dir` to save into. Returns what the restored clone reads back.
asio::awaitable<std::string> run(asio::any_io_executor ex, microvm_config vm_config, std::filesystem::path dir) {
    auto sandbox = co_await microvm_sandbox::async_create(ex, vm_config, asio::use_awaitable);
    co_await sandbox.async_write_file("/tmp/mark", "captured\n", asio::use_awaitable);
#include "snapshot_header_example.inc"
    co_return co_await clone.async_read_file("/tmp/mark", asio::use_awaitable);
}
}  // namespace snapshot_example

namespace restore_pool_example {
using namespace mimobox::vm;
namespace asio = boost::asio;

// restore_pool.hpp's example, given a `snapshot`, a `pool_config` of its shape and `argv`.
asio::awaitable<std::string> run(asio::any_io_executor ex, microvm_config vm_config) {
    auto sandbox = co_await microvm_sandbox::async_create(ex, vm_config, asio::use_awaitable);
    auto snapshot = co_await sandbox.async_snapshot(asio::use_awaitable);
    restore_pool_config pool_config;
    pool_config.vcpu_count = snapshot.vcpu_count();
    pool_config.memory_mib = snapshot.memory_mib();
    std::vector<std::string> argv{"echo", "pooled"};
#include "restore_pool_header_example.inc"
    auto r = co_await vm.sandbox().async_exec(argv, asio::use_awaitable);
    co_await pool.async_stop(asio::use_awaitable);
    co_return r.stdout_data;
}
}  // namespace restore_pool_example

namespace vm_pool_example {
using namespace mimobox::vm;
namespace asio = boost::asio;

// vm_pool.hpp's example, given a `pool_config` (restoring from a snapshot) and `argv`.
asio::awaitable<std::string> run(asio::any_io_executor ex, microvm_config vm_config) {
    auto sandbox = co_await microvm_sandbox::async_create(ex, vm_config, asio::use_awaitable);
    vm_pool_config pool_config;
    pool_config.snapshot = co_await sandbox.async_snapshot(asio::use_awaitable);
    pool_config.min_idle = 1;
    pool_config.max_size = 2;
    std::vector<std::string> argv{"echo", "from the pool"};
#include "vm_pool_header_example.inc"
    co_await pool.async_stop(asio::use_awaitable);
    co_return r.stdout_data;
}
}  // namespace vm_pool_example

int main() {
    boost::asio::io_context io;
    int readme_status = -1;
    std::ostringstream readme_out;
    auto* saved = std::cout.rdbuf(readme_out.rdbuf());
    boost::asio::co_spawn(io, readme::run_uname(io.get_executor()), [&](std::exception_ptr ep, int status) {
        readme_status = ep ? -2 : status;
    });
    io.run();
    std::cout.rdbuf(saved);
    std::printf("README snippet: status %d, output: %s", readme_status, readme_out.str().c_str());
    if (readme_status != 0 || readme_out.str().find("Linux") == std::string::npos) return 1;

    auto config = mimobox::vm::microvm_config_from_assets_dir();
    if (!config) return 2;
    std::string header_out;
    std::string failure = "did not finish";
    io.restart();
    boost::asio::co_spawn(io, header_example::run(io.get_executor(), *config),
                          [&](std::exception_ptr ep, std::string out) {
                              failure.clear();
                              if (!ep) header_out = std::move(out);
                              else try { std::rethrow_exception(ep); } catch (const std::exception& e) { failure = e.what(); }
                          });
    io.run();
    std::printf("header example: %s%s\n", failure.empty() ? "" : failure.c_str(), header_out.c_str());
    if (!failure.empty()) return 3;
    // uname twice, the shell's echo, the streamed uname, the removal.
    std::size_t linux_count = 0;
    for (auto at = header_out.find("GNU/Linux"); at != std::string::npos; at = header_out.find("GNU/Linux", at + 1)) ++linux_count;
    if (linux_count != 3 || header_out.find("|braces\n|") == std::string::npos ||
        header_out.find("|removed") == std::string::npos)
        return 4;
    const auto dir = std::filesystem::temp_directory_path() / ("mimobox-snippet-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::string restored_read, snapshot_failure = "did not finish";
    io.restart();
    boost::asio::co_spawn(io, snapshot_example::run(io.get_executor(), *config, dir), [&](std::exception_ptr ep, std::string out) {
        snapshot_failure.clear();
        if (!ep) restored_read = std::move(out);
        else try { std::rethrow_exception(ep); } catch (const std::exception& e) { snapshot_failure = e.what(); }
    });
    io.run();
    std::filesystem::remove_all(dir);
    std::printf("snapshot example: %s%s", snapshot_failure.c_str(), restored_read.c_str());
    if (!snapshot_failure.empty() || restored_read != "captured\n") return 5;
    std::string pooled, pool_failure = "did not finish";
    io.restart();
    boost::asio::co_spawn(io, restore_pool_example::run(io.get_executor(), *config), [&](std::exception_ptr ep, std::string out) {
        pool_failure.clear();
        if (!ep) pooled = std::move(out);
        else try { std::rethrow_exception(ep); } catch (const std::exception& e) { pool_failure = e.what(); }
    });
    io.run();
    std::printf("restore_pool example: %s%s", pool_failure.c_str(), pooled.c_str());
    if (!pool_failure.empty() || pooled != "pooled\n") return 6;
    std::string from_pool, vm_pool_failure = "did not finish";
    io.restart();
    boost::asio::co_spawn(io, vm_pool_example::run(io.get_executor(), *config), [&](std::exception_ptr ep, std::string out) {
        vm_pool_failure.clear();
        if (!ep) from_pool = std::move(out);
        else try { std::rethrow_exception(ep); } catch (const std::exception& e) { vm_pool_failure = e.what(); }
    });
    io.run();
    std::printf("vm_pool example: %s%s", vm_pool_failure.c_str(), from_pool.c_str());
    if (!vm_pool_failure.empty() || from_pool != "from the pool\n") return 7;
    std::puts("snippets: all passed");
    return 0;
}
