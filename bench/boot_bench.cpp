// Boot-to-init of mimobox's VMM against QEMU's microvm machine with the same kernel and
// initramfs, measured in the same run, alternating, several runs each. Prints one JSON line:
//   {"bench":"boot_to_init", ..., "boot_ratio_vs_qemu": mimobox_median / qemu_median}
// "Init reached" means the guest's init printed MIMOBOX_READY on the serial console: both VMs get
// mimobox.test=idle, so the agent (/init) hands over to the test init, which prints it (QEMU's
// peer has no vsock device, so the agent's own marker would not be comparable).
//   boot_bench [RUNS] [pci|mmio]   (assets from MIMOBOX_VM_ASSETS_DIR; QEMU from PATH)
// The second argument picks our vsock device's transport (virtio-pci, the default, makes the
// guest enumerate a PCI bus at boot; virtio-mmio does not).
#include <mimobox/vm/kvm_backend.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <iostream>
#include <optional>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono;
using mimobox::vm::kvm_backend;
using mimobox::vm::microvm_config;

extern char** environ;

namespace {

constexpr const char* ready_marker = "MIMOBOX_READY";
constexpr auto per_boot_limit = seconds(120);

std::optional<double> boot_mimobox(const microvm_config& cfg) {
    asio::io_context ctx;
    std::optional<double> ms;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), cfg);
        auto start = steady_clock::now();
        auto [ec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
        if (ec) {
            std::cerr << "mimobox boot failed: " << ec.message() << "\n";
            co_return;
        }
        auto [wec] = co_await vm.async_wait_console(ready_marker, asio::as_tuple(asio::use_awaitable));
        if (!wec) ms = duration<double, std::milli>(steady_clock::now() - start).count();
        co_await vm.async_stop(asio::as_tuple(asio::use_awaitable));
    }, asio::detached);
    ctx.run_for(per_boot_limit);
    return ms;
}

// QEMU with the same kernel, initramfs, vCPUs, memory and arguments as kvm_backend uses; the
// time runs from spawn until the marker appears on QEMU's serial stdout.
std::optional<double> boot_qemu(const microvm_config& cfg, const std::string& cmdline) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return std::nullopt;
    std::vector<std::string> args = {"qemu-system-x86_64", "-accel", "kvm", "-M", "microvm", "-cpu", "host",
                                     "-m", std::to_string(cfg.memory_mib), "-smp", std::to_string(cfg.vcpu_count),
                                     "-kernel", cfg.kernel.string(), "-initrd", cfg.initramfs.string(),
                                     "-append", cmdline, "-nodefaults", "-no-user-config", "-display", "none",
                                     "-serial", "stdio", "-no-reboot"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    auto start = steady_clock::now();
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, "qemu-system-x86_64", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) {
        ::close(out[0]);
        std::cerr << "cannot start qemu-system-x86_64\n";
        return std::nullopt;
    }
    std::string seen;
    std::optional<double> ms;
    while (steady_clock::now() - start < per_boot_limit) {
        pollfd p{out[0], POLLIN, 0};
        if (::poll(&p, 1, 1000) <= 0) continue;
        char buf[4096];
        auto n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        seen.append(buf, static_cast<std::size_t>(n));
        if (seen.find(ready_marker) != std::string::npos) {
            ms = duration<double, std::milli>(steady_clock::now() - start).count();
            break;
        }
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    if (!ms) std::cerr << "qemu did not reach init; output tail:\n" << seen.substr(seen.size() > 2000 ? seen.size() - 2000 : 0) << "\n";
    return ms;
}

// The peer's version ("7.2.22"): the same binary as the harness's L1 (scripts/bench.sh packs it).
std::string qemu_version() {
    std::string out;
    if (std::FILE* p = ::popen("qemu-system-x86_64 --version 2>/dev/null", "r")) {
        char line[256];
        if (std::fgets(line, sizeof line, p)) out = line;
        ::pclose(p);
    }
    constexpr std::string_view prefix = "QEMU emulator version ";
    if (out.rfind(prefix, 0) != 0) return "unknown";
    out.erase(0, prefix.size());
    return out.substr(0, out.find_first_of(" \n"));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

std::string list(const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(static_cast<long>(v[i]));
    return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
    int runs = argc > 1 ? std::atoi(argv[1]) : 5;
    const bool mmio = argc > 2 && std::strcmp(argv[2], "mmio") == 0;
    if (argc > 2 && !mmio && std::strcmp(argv[2], "pci") != 0) {
        std::cerr << "usage: boot_bench [RUNS] [pci|mmio]\n";
        return 2;
    }
    const char* dir = std::getenv("MIMOBOX_VM_ASSETS_DIR");
    if (!dir) {
        std::cerr << "MIMOBOX_VM_ASSETS_DIR is not set\n";
        return 2;
    }
    microvm_config cfg;
    cfg.kernel = std::filesystem::path(dir) / "bzImage";
    cfg.initramfs = std::filesystem::path(dir) / "initramfs.cpio.gz";
    cfg.memory_mib = 128;
    cfg.vcpu_count = 1;
    cfg.cmdline_extra = "mimobox.test=idle";
    cfg.vsock = mmio ? mimobox::vm::vsock_link::virtio_mmio : mimobox::vm::vsock_link::virtio_pci;
    // The same guest arguments kvm_backend passes (base_cmdline in lib/vmm/machine_build.cpp).
    const std::string cmdline = "console=ttyS0 reboot=t panic=-1 quiet nomodule i8042.noaux i8042.nomux i8042.dumbkbd "
                                "8250.nr_uarts=1 tsc=reliable no_timer_check mimobox.test=idle";
    std::vector<double> ours, qemu;
    for (int i = 0; i < runs; ++i) {
        if (auto ms = boot_mimobox(cfg)) ours.push_back(*ms);
        if (auto ms = boot_qemu(cfg, cmdline)) qemu.push_back(*ms);
    }
    if (ours.empty() || qemu.empty()) {
        std::cerr << "boot_bench: not enough successful boots (mimobox " << ours.size() << ", qemu " << qemu.size() << ")\n";
        return 1;
    }
    double m = median(ours), q = median(qemu);
    std::printf("{\"bench\":\"boot_to_init\",\"link\":\"%s\",\"runs\":%d,\"mimobox_ms\":%s,\"qemu_microvm_ms\":%s,"
                "\"mimobox_median_ms\":%.1f,\"qemu_median_ms\":%.1f,\"boot_ratio_vs_qemu\":%.3f,\"qemu_version\":\"%s\"}\n",
                mmio ? "mmio" : "pci", runs, list(ours).c_str(), list(qemu).c_str(), m, q, m / q, qemu_version().c_str());
    return 0;
}
