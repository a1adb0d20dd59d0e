// Exec round trip and file throughput through microvm_sandbox, each against a peer measured in
// the same VM and run: the guest's own fork+exec+wait of the same program (timed inside the
// guest by /sbin/mimobox-spawn-bench), and memcpy for file transfer. Also reported: the round
// trip of an agent operation that runs no command (exists), the transport's share; and two
// costs per operation: the calling thread's CPU time (all host-side work but the vCPU threads:
// the io_context runs here), and the guest's VM exits, all of them and those that came out
// to our process, counts that do not depend on how fast the machine happens to run, read
// from KVM's debugfs counters where they are readable (root, debugfs mounted; the harness
// mounts it). An exit_breakdown line splits those exits by reason.
//   sandbox_bench [EXEC_RUNS] [FILE_MIB] [pci|mmio]   (MIMOBOX_VM_ASSETS_DIR names the assets)
// The last argument picks the vsock device's transport (virtio-pci, the default, or virtio-mmio),
// so the two can be compared in one run of the harness.
#include <mimobox/vm/microvm_sandbox.hpp>
#include <mimobox/vm/vm_assets.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string_view>

#include <time.h>

namespace asio = boost::asio;
using namespace mimobox::vm;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

double memcpy_mib_s(std::size_t mib) {
    std::string a(mib << 20, 'a'), b(mib << 20, 'b');
    const auto t = clock_type::now();
    std::memcpy(b.data(), a.data(), a.size());
    const double s = seconds_since(t);
    volatile char sink = b[b.size() / 2];  // the copy is used, so it is not optimized away
    (void)sink;
    return static_cast<double>(mib) / s;
}

double thread_cpu_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// One of KVM's debugfs counters, summed over every VM on the host; this benchmark runs the
// only one.
std::optional<double> kvm_counter(const char* name) {
    std::ifstream f(std::string("/sys/kernel/debug/kvm/") + name);
    double n = 0;
    if (f >> n) return n;
    return std::nullopt;
}

std::optional<double> kvm_exits() { return kvm_counter("exits"); }

// A JSON number with one decimal, or null.
std::string json_number(std::optional<double> v) {
    if (!v) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", *v);
    return buf;
}

// How much a counter that may be unreadable grew over the measured stretches.
struct counter_growth {
    double total = 0;
    bool known = true;
    std::optional<double> at;
    void start(std::optional<double> now) { at = now; }
    void stop(std::optional<double> now) {
        if (now && at) total += *now - *at;
        else known = false;
    }
    std::optional<double> per(double operations) const {
        if (!known || operations <= 0) return std::nullopt;
        return total / operations;
    }
};

// KVM's exit counters by reason, for the breakdown line. Those up to signal_exits are
// disjoint exit reasons; what the total has beyond them is mostly MSR writes (the TSC
// deadline timer, x2APIC EOIs and IPIs), CPUID and nested page faults. irq_injections counts
// interrupts delivered, not exits.
constexpr const char* exit_reasons[] = {"halt_exits", "irq_exits", "irq_window_exits", "io_exits",
                                        "request_irq_exits", "signal_exits", "mmio_exits", "irq_injections"};
constexpr std::size_t disjoint_exit_reasons = 6;
constexpr std::size_t reason_count = std::size(exit_reasons);
constexpr std::size_t reason_index(std::string_view name) {
    std::size_t i = 0;
    while (i < reason_count && exit_reasons[i] != name) ++i;
    return i;
}
constexpr std::size_t io_exits_index = reason_index("io_exits");
constexpr std::size_t mmio_exits_index = reason_index("mmio_exits");
static_assert(io_exits_index < reason_count && mmio_exits_index < reason_count);

// Host CPU time and guest exits spent in one kind of operation, over all its samples.
struct cost_meter {
    double cpu_us = 0, operations = 0;
    double cpu_at = 0;
    counter_growth exits;
    counter_growth by_reason[reason_count];
    void start() {
        exits.start(kvm_exits());
        for (std::size_t i = 0; i < reason_count; ++i) by_reason[i].start(kvm_counter(exit_reasons[i]));
        cpu_at = thread_cpu_us();
    }
    void stop(double ops) {
        cpu_us += thread_cpu_us() - cpu_at;
        exits.stop(kvm_exits());
        for (std::size_t i = 0; i < reason_count; ++i) by_reason[i].stop(kvm_counter(exit_reasons[i]));
        operations += ops;
    }
    // {"halt_exits":x,...,"other_exits":y} per operation, or null where the counters are unreadable.
    std::string breakdown() const {
        const auto total = exits_per_op();
        if (!total) return "null";
        std::string out = "{";
        double other = *total;
        for (std::size_t i = 0; i < reason_count; ++i) {
            const auto v = by_reason[i].per(operations);
            if (v && i < disjoint_exit_reasons) other -= *v;
            out += std::string("\"") + exit_reasons[i] + "\":" + json_number(v) + ",";
        }
        return out + "\"other_exits\":" + json_number(other) + "}";
    }
    double cpu_per_op() const { return operations > 0 ? cpu_us / operations : 0; }
    std::optional<double> exits_per_op() const { return exits.per(operations); }
    // Port and MMIO accesses (KVM's io_exits + mmio_exits). With virtio-mmio they mostly come
    // out to our process (interrupt status and acknowledge); with virtio-pci they are the
    // notification port writes, which KVM hands to an ioeventfd itself.
    std::optional<double> io_exits_per_op() const {
        const auto io = by_reason[io_exits_index].per(operations);
        const auto mmio = by_reason[mmio_exits_index].per(operations);
        if (io && mmio) return *io + *mmio;
        return std::nullopt;
    }
};

// Built outside the coroutine: GCC 12 miscompiles braced string lists inside coroutines.
std::vector<std::string> command(const char* a, const char* b = nullptr, const char* c = nullptr) {
    std::vector<std::string> v;
    v.emplace_back(a);
    if (b) v.emplace_back(b);
    if (c) v.emplace_back(c);
    return v;
}

asio::awaitable<int> run(int runs, std::size_t mib, vsock_link link) {
    constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
    auto config = microvm_config_from_assets_dir();
    if (!config) {
        std::cerr << "assets: " << config.error().message() << "\n";
        co_return 2;
    }
    config->memory_mib = 512;
    config->vsock = link;
    sandbox_config options;
    auto [ec, sb] = co_await microvm_sandbox::async_create(co_await asio::this_coro::executor, *config, options, use_tuple);
    if (ec) {
        std::cerr << "sandbox: " << ec.message() << "\n";
        co_return 1;
    }
    guest_exec_options exec_options;
    // Exec round trips of `true` and the guest's own spawns of `true`, interleaved in ten rounds
    // so that both sample the same (under emulation, drifting) machine speed across the run. The
    // figure is the median round trip over the median of the rounds' spawn medians. Each
    // round's own ratio is printed too (median, min, max): with ten spawns per round its
    // denominator is noisy, which skews the median of those ratios upward. One warm-up exec.
    constexpr int rounds = 10;
    const int per_round = std::max(1, runs / rounds);
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::vector<double> rtt_us, spawn_us, first_spawn_us, agent_spawn_us, outside_us, round_ratios, op_us;
    cost_meter exec_cost, stat_cost, spawn_cost;
    double spawns = 0;
    {
        auto [xec, r] = co_await sb.async_exec(command("true"), exec_options, use_tuple);
        if (xec) co_return 1;
    }
    for (int round = 0; round < rounds; ++round) {
        std::vector<double> round_rtt;
        exec_cost.start();
        for (int i = 0; i < per_round; ++i) {
            const auto t = clock_type::now();
            auto [xec, r] = co_await sb.async_exec(command("true"), exec_options, use_tuple);
            if (xec || r.exit_code != 0) {
                std::cerr << "exec: " << xec.message() << "\n";
                co_return 1;
            }
            round_rtt.push_back(seconds_since(t) * 1e6);
            // Where the time goes: the agent's own spawn-to-exit, and everything else (host,
            // vsock both ways, the agent reading the request and writing the answer).
            const double in_agent = static_cast<double>(r.duration.count());
            agent_spawn_us.push_back(in_agent);
            outside_us.push_back(round_rtt.back() - in_agent);
        }
        exec_cost.stop(per_round);
        // The same trip without a command: an agent operation that only stats a path.
        stat_cost.start();
        for (int i = 0; i < per_round; ++i) {
            const auto t = clock_type::now();
            auto [eec, there] = co_await sb.async_exists("/tmp", use_tuple);
            if (eec || !there) co_return 1;
            op_us.push_back(seconds_since(t) * 1e6);
        }
        stat_cost.stop(per_round);
        const int round_spawns = std::max(2 * per_round, 10);
        spawn_cost.start();
        auto [gec, guest] = co_await sb.async_exec(
            command("/sbin/mimobox-spawn-bench", std::to_string(round_spawns).c_str(), "true"), exec_options, use_tuple);
        spawn_cost.stop(1);  // one exec; its spawns are counted below
        spawns += round_spawns;
        if (gec || guest.exit_code != 0) {
            std::cerr << "spawn bench: " << gec.message() << guest.stderr_data << "\n";
            co_return 1;
        }
        const auto report = boost::json::parse(guest.stdout_data);
        spawn_us.push_back(report.at("median_us").to_number<double>());
        first_spawn_us.push_back(report.at("first_us").to_number<double>());
        round_ratios.push_back(median(round_rtt) / spawn_us.back());
        rtt_us.insert(rtt_us.end(), round_rtt.begin(), round_rtt.end());
    }
    // The spawn bench's exits, less those of the exec that ran it (an exec of `true` costs
    // about the same), spread over its spawns.
    std::optional<double> spawn_exits_per_spawn;
    if (const auto per_exec = exec_cost.exits_per_op(); per_exec && spawn_cost.exits.known && spawns > 0)
        spawn_exits_per_spawn = (spawn_cost.exits.total - *per_exec * spawn_cost.operations) / spawns;
    const double rtt = median(rtt_us);
    const double spawn = median(spawn_us);  // median of the rounds' medians
    std::sort(round_ratios.begin(), round_ratios.end());
    std::printf("{\"bench\":\"exec_rtt\",\"link\":\"%s\",\"runs\":%zu,\"rounds\":%d,\"exec_rtt_median_us\":%.0f,\"guest_spawn_median_us\":%.0f,"
                "\"exec_rtt_vs_guest_spawn\":%.2f,\"round_ratio_median\":%.2f,\"round_ratio_min\":%.2f,\"round_ratio_max\":%.2f,"
                "\"guest_first_spawn_median_us\":%.0f,\"agent_spawn_median_us\":%.0f,\"outside_spawn_median_us\":%.0f,"
                "\"stat_op_rtt_median_us\":%.0f,\"host_cpu_us_per_exec\":%.0f,\"host_cpu_us_per_stat_op\":%.0f,"
                "\"guest_exits_per_exec\":%s,\"guest_exits_per_stat_op\":%s,\"guest_exits_per_spawn\":%s,"
                "\"port_and_mmio_exits_per_exec\":%s,\"port_and_mmio_exits_per_stat_op\":%s}\n",
                link == vsock_link::virtio_mmio ? "mmio" : "pci", rtt_us.size(), rounds, rtt, spawn, rtt / spawn, median(round_ratios), round_ratios.front(), round_ratios.back(),
                median(first_spawn_us), median(agent_spawn_us), median(outside_us), median(op_us), exec_cost.cpu_per_op(),
                stat_cost.cpu_per_op(), json_number(exec_cost.exits_per_op()).c_str(),
                json_number(stat_cost.exits_per_op()).c_str(), json_number(spawn_exits_per_spawn).c_str(),
                json_number(exec_cost.io_exits_per_op()).c_str(), json_number(stat_cost.io_exits_per_op()).c_str());

    std::printf("{\"bench\":\"exit_breakdown\",\"link\":\"%s\",\"per_exec\":%s,\"per_stat_op\":%s}\n",
                link == vsock_link::virtio_mmio ? "mmio" : "pci", exec_cost.breakdown().c_str(), stat_cost.breakdown().c_str());

    std::string data(mib << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 12));
    auto t = clock_type::now();
    auto [wec] = co_await sb.async_write_file("/tmp/bench.bin", data, use_tuple);
    const double write_s = seconds_since(t);
    t = clock_type::now();
    auto [rec, back] = co_await sb.async_read_file("/tmp/bench.bin", use_tuple);
    const double read_s = seconds_since(t);
    if (wec || rec || back != data) {
        std::cerr << "file: " << (wec ? wec : rec).message() << "\n";
        co_return 1;
    }
    const double copy = memcpy_mib_s(mib);
    std::printf("{\"bench\":\"file_transfer\",\"mib\":%zu,\"host_to_guest_mib_s\":%.1f,\"guest_to_host_mib_s\":%.1f,"
                "\"memcpy_mib_s\":%.0f,\"host_to_guest_vs_memcpy\":%.4f,\"guest_to_host_vs_memcpy\":%.4f}\n",
                mib, mib / write_s, mib / read_s, copy, mib / write_s / copy, mib / read_s / copy);
    co_await sb.async_destroy(use_tuple);
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::atoi(argv[1]) : 50;
    const std::size_t mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
    const bool mmio = argc > 3 && std::strcmp(argv[3], "mmio") == 0;
    if (argc > 3 && !mmio && std::strcmp(argv[3], "pci") != 0) {
        std::cerr << "usage: sandbox_bench [EXEC_RUNS] [FILE_MIB] [pci|mmio]\n";
        return 2;
    }
    asio::io_context ctx;
    int status = 1;
    asio::co_spawn(ctx, run(runs, mib, mmio ? vsock_link::virtio_mmio : vsock_link::virtio_pci), [&](std::exception_ptr e, int s) {
        if (e) std::rethrow_exception(e);
        status = s;
    });
    ctx.run();
    return status;
}
