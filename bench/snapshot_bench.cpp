// Snapshot capture and restore against a cold boot, measured in the same run: the peer of a
// restore is a boot of the same guest, both timed to the first completed exec ("exec-ready").
// Also the capture's cost and what it writes against what the guest touched, and restore
// times of a 256 MiB and a 2 GiB guest, which should be close: a restore maps the memory file
// and copies nothing.
//   snapshot_bench [RUNS]   (MIMOBOX_VM_ASSETS_DIR names the assets)
// JSON lines: one per guest size (boot_ms, capture_ms, snapshot_file_mib, guest_touched_mib:
// what the host had backed, guest_used_mib: the guest's MemTotal - MemFree, vm_restore_ms: the
// VM alone, restore_ms: to exec-ready; times the median of RUNS), then a summary with restore_vs_boot_ratio,
// restore_ms_256, restore_ms_2048 and their ratio.
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/microvm_snapshot.hpp>
#include <mimobox/vm/vm_assets.hpp>

#include "bench_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace mimobox::vm;
using mimobox::bench::clock_type;
using mimobox::bench::median;
using mimobox::bench::ms_since;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);



std::vector<std::string> command(const char* a) { return std::vector<std::string>{a}; }

struct size_result {
    double boot_ms = 0, capture_ms = 0, file_mib = 0, touched_mib = 0, used_mib = 0, restore_ms = 0, vm_restore_ms = 0;
};

// The guest's own count of memory in use: MemTotal - MemFree, in MiB.
asio::awaitable<double> guest_used_mib(microvm_sandbox& sb) {
    auto [ec, r] = co_await sb.async_exec_shell("awk '/MemTotal/{t=$2} /MemFree/{f=$2} END{print t-f}' /proc/meminfo", use_tuple);
    if (ec || r.exit_code != 0) co_return -1;
    co_return std::stod(r.stdout_data) / 1024;
}

asio::awaitable<bool> exec_ready(microvm_sandbox& sb) {
    auto [ec, r] = co_await sb.async_exec(command("true"), use_tuple);
    co_return !ec && r.exit_code == 0;
}

asio::awaitable<bool> measure(microvm_config config, int runs, size_result& out) {
    auto ex = co_await asio::this_coro::executor;
    std::vector<double> boot, capture, restore;
    microvm_snapshot snap;
    for (int i = 0; i < runs; ++i) {
        const auto t = clock_type::now();
        auto [ec, sb] = co_await microvm_sandbox::async_create(ex, config, use_tuple);
        if (ec || !co_await exec_ready(sb)) {
            std::cerr << "boot: " << ec.message() << "\n";
            co_return false;
        }
        boot.push_back(ms_since(t));
        if (i == 0) out.used_mib = co_await guest_used_mib(sb);
        const auto c = clock_type::now();
        auto [sec, s] = co_await sb.async_snapshot(use_tuple);
        if (sec) {
            std::cerr << "snapshot: " << sec.message() << "\n";
            co_return false;
        }
        capture.push_back(ms_since(c));
        snap = std::move(s);
        co_await sb.async_destroy(use_tuple);
    }
    out.file_mib = static_cast<double>(snap.memory_data_bytes()) / (1 << 20);
    out.touched_mib = static_cast<double>(snap.memory_touched_bytes()) / (1 << 20);
    // The VM alone, without the agent's handshake: the restore's own share.
    std::vector<double> vm_restore;
    for (int i = 0; i < runs; ++i) {
        microvm_config same = config;
        kvm_backend vm(ex, same);
        const auto t = clock_type::now();
        auto [ec] = co_await vm.async_restore(snap, use_tuple);
        if (ec) {
            std::cerr << "vm restore: " << ec.message() << "\n";
            co_return false;
        }
        vm_restore.push_back(ms_since(t));
        co_await vm.async_stop(use_tuple);
    }
    out.vm_restore_ms = median(vm_restore);
    for (int i = 0; i < runs; ++i) {
        const auto t = clock_type::now();
        auto [ec, sb] = co_await microvm_sandbox::async_restore(ex, snap, use_tuple);
        if (ec || !co_await exec_ready(sb)) {
            std::cerr << "restore: " << ec.message() << "\n";
            co_return false;
        }
        restore.push_back(ms_since(t));
        co_await sb.async_destroy(use_tuple);
    }
    out.boot_ms = median(boot);
    out.capture_ms = median(capture);
    out.restore_ms = median(restore);
    co_return true;
}

asio::awaitable<int> run(int runs) {
    auto config = microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << "\n";
        co_return 2;
    }
    std::vector<std::pair<std::uint32_t, size_result>> results;
    for (std::uint32_t mib : {256u, 2048u}) {
        config->memory_mib = mib;
        size_result r;
        if (!co_await measure(*config, runs, r)) co_return 1;
        std::printf("{\"bench\":\"snapshot\",\"memory_mib\":%u,\"runs\":%d,\"boot_ms\":%.1f,\"capture_ms\":%.1f,"
                    "\"snapshot_file_mib\":%.1f,\"guest_touched_mib\":%.1f,\"guest_used_mib\":%.1f,\"vm_restore_ms\":%.1f,"
                    "\"restore_ms\":%.1f}\n",
                    mib, runs, r.boot_ms, r.capture_ms, r.file_mib, r.touched_mib, r.used_mib, r.vm_restore_ms, r.restore_ms);
        results.emplace_back(mib, r);
    }
    const auto& small = results[0].second;
    const auto& large = results[1].second;
    std::printf("{\"bench\":\"snapshot_summary\",\"restore_vs_boot_ratio\":%.3f,\"restore_ms_256\":%.1f,"
                "\"restore_ms_2048\":%.1f,\"restore_2048_over_256\":%.2f}\n",
                small.restore_ms / small.boot_ms, small.restore_ms, large.restore_ms, large.restore_ms / small.restore_ms);
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    asio::io_context ctx;
    int rc = 1;
    asio::co_spawn(ctx, run(runs), [&](std::exception_ptr e, int r) {
        if (e) std::cerr << "snapshot_bench failed with an exception\n";
        rc = e ? 1 : r;
    });
    ctx.run();
    return rc;
}
