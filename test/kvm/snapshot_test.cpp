// Snapshots of running sandboxes: capture, restore in memory and from disk (in another
// process), what survives (files, processes) and what must not (connections, clock, entropy,
// hostname), both vsock transports, resource use over many cycles, and refused snapshots.
#include "mimobox/vm/microvm_snapshot.hpp"

#define BOOST_TEST_MODULE snapshot
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "mimobox/vm/microvm_sandbox.hpp"
#include "snapshot/machine_state.hpp"
#include "snapshot/state_codec.hpp"
#include "vm_test_support.hpp"

#include <dirent.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

extern char** environ;

using namespace mimobox;
using namespace mimobox::test;
using boost::system::error_code;
using vm::microvm_sandbox;
using vm::microvm_snapshot;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t guest_mib = 128;

template <class... Args>
std::vector<std::string> argv(const Args&... a) {
    std::vector<std::string> v;
    (v.emplace_back(a), ...);
    return v;
}

vm::sandbox_config named(std::string hostname) {
    vm::sandbox_config c;
    c.hostname = std::move(hostname);
    return c;
}

asio::awaitable<microvm_sandbox> start_sandbox(asio::io_context& ctx, vm::vsock_link link) {
    auto cfg = guest_config("", 1, guest_mib);
    cfg.vsock = link;
    microvm_sandbox sb(ctx.get_executor(), cfg, named("original"));
    auto [ec] = co_await sb.async_start(use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "sandbox: " << ec.message() << "\nconsole:\n" << sb.backend().console_output());
    co_return std::move(sb);
}

asio::awaitable<microvm_snapshot> snapshot_of(microvm_sandbox& sb) {
    auto [ec, snap] = co_await sb.async_snapshot(use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "snapshot: " << ec.message() << vm_report(sb));
    BOOST_REQUIRE(snap.valid());
    co_return std::move(snap);
}

asio::awaitable<microvm_sandbox> restore(asio::io_context& ctx, microvm_snapshot snap, std::string hostname) {
    auto [ec, sb] = co_await microvm_sandbox::async_restore(ctx.get_executor(), std::move(snap), named(std::move(hostname)), use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "restore: " << ec.message());
    BOOST_REQUIRE((sb.state() == vm::microvm_state::ready));
    co_return std::move(sb);
}





// A process that keeps counting into /tmp/ticks while it lives; detached from the exec.
constexpr const char* start_ticker =
    "(i=0; while :; do i=$((i+1)); echo $i > /tmp/ticks; sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo started";

}  // namespace

BOOST_AUTO_TEST_CASE(files_and_processes_survive_a_restore_and_open_streams_end_there) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_pci);
        co_await shell_ok(original, "echo kept > /tmp/before && mkdir -p /root/d && echo deep > /root/d/f");
        BOOST_TEST(co_await shell_ok(original, start_ticker) == "started\n");
        vm::guest_exec_options streaming;
        auto [sec, stream] = co_await original.async_exec_stream(argv("sleep", "1001"), streaming, use_tuple);
        BOOST_REQUIRE_MESSAGE(!sec, sec.message());

        auto snap = co_await snapshot_of(original);
        BOOST_TEST(snap.vcpu_count() == 1u);
        BOOST_TEST(snap.memory_mib() == guest_mib);
        BOOST_TEST(snap.memory_data_bytes() > 0u);
        BOOST_TEST(snap.memory_data_bytes() < std::uint64_t(guest_mib) << 20);

        auto clone = co_await restore(ctx, snap, "restored");
        BOOST_TEST(co_await shell_ok(clone, "cat /tmp/before /root/d/f") == "kept\ndeep\n");
        // The ticker goes on counting in the restored VM.
        const auto first = std::stoi(co_await shell_ok(clone, "cat /tmp/ticks"));
        co_await shell_ok(clone, "sleep 1");
        const auto later = std::stoi(co_await shell_ok(clone, "cat /tmp/ticks"));
        BOOST_TEST(later > first);
        // The stream's connection did not survive: the agent saw it reset and killed its command.
        std::string left;
        for (int i = 0; i < 50; ++i) {
            left = co_await shell_ok(clone, "ps -o args | grep '^sleep 1001' || true");
            if (left.empty()) break;
            co_await shell_ok(clone, "sleep 0.2");
        }
        BOOST_TEST(left == "");
        BOOST_TEST(co_await shell_ok(clone, "hostname") == "restored\n");

        // The original goes on: its stream is alive and ends as a killed command does.
        BOOST_TEST(co_await shell_ok(original, "hostname") == "original\n");
        auto [kec] = co_await stream.async_kill(use_tuple);
        BOOST_TEST(!kec);
        for (;;) {
            auto [nec, event] = co_await stream.async_next(use_tuple);
            BOOST_REQUIRE_MESSAGE(!nec, nec.message());
            if (event.kind == vm::stream_event_kind::exit) {
                BOOST_TEST(event.status.signal == 9);
                break;
            }
        }
    });
}

BOOST_AUTO_TEST_CASE(restores_get_the_host_clock_their_own_entropy_and_hostname) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_pci);
        auto snap = co_await snapshot_of(original);
        co_await original.async_destroy(use_tuple);
        // Time passes between capture and restore; the restored guests must not live in the past.
        asio::steady_timer pause(ctx, std::chrono::seconds(3));
        co_await pause.async_wait(use_tuple);
        auto a = co_await restore(ctx, snap, "clone-a");
        auto b = co_await restore(ctx, snap, "clone-b");
        for (auto* sb : {&a, &b}) {
            // The guest's clock to the nanosecond: the mtime it gives a file it creates
            // (busybox's date has no %N).
            const auto before = host_now_ns();
            co_await shell_ok(*sb, "touch /tmp/now");
            const auto after = host_now_ns();
            auto [stec, st] = co_await sb->async_stat("/tmp/now", use_tuple);
            BOOST_REQUIRE_MESSAGE(!stec, stec.message());
            const auto guest = st.mtime.count();
            BOOST_TEST_MESSAGE("guest clock - host clock: " << (guest - before) / 1'000'000 << " ms (exec took "
                                                              << (after - before) / 1'000'000 << " ms)");
            BOOST_TEST(guest >= before - 1'000'000'000);
            BOOST_TEST(guest <= after + 1'000'000'000);
        }
        const auto random_a = co_await shell_ok(a, "head -c 32 /dev/urandom | od -An -tx1");
        const auto random_b = co_await shell_ok(b, "head -c 32 /dev/urandom | od -An -tx1");
        BOOST_TEST(random_a.size() > 64u);
        BOOST_TEST(random_a != random_b);
        BOOST_TEST(co_await shell_ok(a, "hostname") == "clone-a\n");
        BOOST_TEST(co_await shell_ok(b, "hostname") == "clone-b\n");
        // Each is its own machine.
        co_await shell_ok(a, "echo only-a > /tmp/mine");
        BOOST_TEST(co_await shell_ok(b, "cat /tmp/mine 2>/dev/null || echo absent") == "absent\n");
    });
}

BOOST_AUTO_TEST_CASE(virtio_mmio_sandboxes_round_trip_too) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_mmio);
        co_await shell_ok(original, "echo mmio > /tmp/t");
        auto snap = co_await snapshot_of(original);
        BOOST_TEST((snap.vsock() == vm::vsock_link::virtio_mmio));
        auto clone = co_await restore(ctx, snap, "mmio-clone");
        BOOST_TEST(co_await shell_ok(clone, "cat /tmp/t") == "mmio\n");
        // A snapshot of a restored VM restores as well (its memory comes from the first file).
        co_await shell_ok(clone, "echo second > /tmp/u");
        auto again = co_await snapshot_of(clone);
        auto grandchild = co_await restore(ctx, again, "grandchild");
        BOOST_TEST(co_await shell_ok(grandchild, "cat /tmp/t /tmp/u") == "mmio\nsecond\n");
    });
}

// The child half of restores_from_disk_after_the_capturing_process_exited: boot, capture,
// save to the directory given after `--`, exit. Disabled: only run by name.
BOOST_AUTO_TEST_CASE(capture_to_disk_child, *boost::unit_test::disabled()) {
    const auto& suite = boost::unit_test::framework::master_test_suite();
    BOOST_REQUIRE(suite.argc >= 2);
    const std::filesystem::path dir = suite.argv[suite.argc - 1];
    run_coroutine([&](asio::io_context& ctx) -> asio::awaitable<void> {
        auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_pci);
        co_await shell_ok(original, "echo from-the-other-process > /root/note");
        auto snap = co_await snapshot_of(original);
        auto ec = snap.save(dir);
        BOOST_REQUIRE_MESSAGE(!ec, "save: " << ec.message());
    });
}

BOOST_AUTO_TEST_CASE(restores_from_disk_after_the_capturing_process_exited) {
    const auto dir = std::filesystem::temp_directory_path() / ("mimobox-snapshot-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::string self = std::filesystem::read_symlink("/proc/self/exe");
    std::vector<std::string> args{self, "--run_test=capture_to_disk_child", "--", dir.string()};
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    pid_t child = 0;
    BOOST_REQUIRE(::posix_spawn(&child, self.c_str(), nullptr, nullptr, cargs.data(), environ) == 0);
    int status = 0;
    BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
    BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the capturing process failed: " << status);
    BOOST_REQUIRE(std::filesystem::exists(dir / "state"));
    BOOST_TEST_MESSAGE("memory file: " << std::filesystem::file_size(dir / "memory") << " bytes apparent");

    run_coroutine([&](asio::io_context& ctx) -> asio::awaitable<void> {
        auto loaded = microvm_snapshot::load(dir);
        BOOST_REQUIRE_MESSAGE(loaded.has_value(), "load: " << loaded.error().message());
        auto clone = co_await restore(ctx, *loaded, "from-disk");
        BOOST_TEST(co_await shell_ok(clone, "cat /root/note") == "from-the-other-process\n");
    });
    std::filesystem::remove_all(dir);
}

#if defined(__SANITIZE_ADDRESS__)
// In the sanitizer build, freed memory would sit in ASan's quarantine and count as RSS: the
// bound below is about what we keep.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=0"; }
#endif

BOOST_AUTO_TEST_CASE(capture_restore_destroy_cycles_keep_fds_threads_and_rss_flat) {
    run_coroutine(
        [](asio::io_context& ctx) -> asio::awaitable<void> {
            auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_pci);
            std::size_t fds = 0, threads = 0, rss = 0;
            const int cycles = test_scale(50, 20), warm_up = 5;
            for (int i = 0; i < cycles; ++i) {
                if (i == warm_up) {
                    fds = count_entries("/proc/self/fd");
                    threads = count_entries("/proc/self/task");
                    rss = rss_bytes();
                }
                auto snap = co_await snapshot_of(original);
                auto clone = co_await restore(ctx, std::move(snap), "cycle");
                co_await shell_ok(clone, "true");
                auto [dec] = co_await clone.async_destroy(use_tuple);
                BOOST_REQUIRE(!dec);
            }
            BOOST_TEST_MESSAGE("after " << cycles << " cycles: fds " << fds << " -> " << count_entries("/proc/self/fd")
                                        << ", threads " << threads << " -> " << count_entries("/proc/self/task") << ", RSS "
                                        << rss / 1024 << " -> " << rss_bytes() / 1024 << " KiB");
            BOOST_TEST(count_entries("/proc/self/fd") == fds);
            BOOST_TEST(count_entries("/proc/self/task") == threads);
            BOOST_TEST(rss_bytes() <= rss + (16u << 20));
        },
        std::chrono::seconds(1100));
}

BOOST_AUTO_TEST_CASE(unusable_snapshots_and_vms_are_refused_with_typed_errors) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto original = co_await start_sandbox(ctx, vm::vsock_link::virtio_pci);
        auto snap = co_await snapshot_of(original);

        // Another shape than the snapshot's.
        auto cfg = guest_config("", 1, guest_mib * 2);
        vm::kvm_backend wrong_memory(ctx.get_executor(), cfg);
        auto [mec] = co_await wrong_memory.async_restore(snap, use_tuple);
        BOOST_TEST((mec == vm::snapshot_errc::shape_mismatch));
        BOOST_TEST((wrong_memory.state() == vm::kvm_lifecycle::stopped));
        vm::sandbox_config serial;
        serial.transport = vm::kvm_transport::serial;
        auto [tec, none] = co_await microvm_sandbox::async_restore(ctx.get_executor(), snap, serial, use_tuple);
        BOOST_TEST((tec == vm::snapshot_errc::shape_mismatch));
        // An empty handle.
        auto [eec, none2] = co_await microvm_sandbox::async_restore(ctx.get_executor(), microvm_snapshot(), use_tuple);
        BOOST_TEST((eec == vm::snapshot_errc::not_a_snapshot));

        // Captured on "another vendor's" CPU: the metadata is rewritten and re-sealed (a valid
        // hash), so only the vendor check can refuse it.
        auto blob = snapshot::from_bytes(snap.to_bytes());
        BOOST_REQUIRE(blob.has_value());
        auto other_vendor = *blob;
        other_vendor.metadata.cpu_vendor = other_vendor.metadata.cpu_vendor == "GenuineIntel" ? "AuthenticAMD" : "GenuineIntel";
        auto foreign = microvm_snapshot::from_bytes(snapshot::to_bytes(other_vendor), snap.memory_fd());
        BOOST_REQUIRE(foreign.has_value());
        auto [vec, none3] = co_await microvm_sandbox::async_restore(ctx.get_executor(), *foreign, use_tuple);
        BOOST_TEST((vec == vm::snapshot_errc::cpu_mismatch));
        // The guest saw a feature this host lacks: every bit of leaf 7's ebx set.
        auto machine = snapshot::decode_machine_state(blob->body);
        BOOST_REQUIRE(machine.has_value());
        for (auto& e : machine->vcpus[0].cpuid)
            if (e.function == 7 && e.index == 0) e.ebx = 0xffffffffu;
        auto featured = *blob;
        featured.body = snapshot::encode_machine_state(*machine);
        auto richer = microvm_snapshot::from_bytes(snapshot::to_bytes(featured), snap.memory_fd());
        BOOST_REQUIRE(richer.has_value());
        auto [fec, none4] = co_await microvm_sandbox::async_restore(ctx.get_executor(), *richer, use_tuple);
        BOOST_TEST((fec == vm::snapshot_errc::cpu_mismatch));

        // A sandbox over the serial transport cannot be captured.
        vm::sandbox_config over_serial;
        over_serial.transport = vm::kvm_transport::serial;
        microvm_sandbox slow(ctx.get_executor(), guest_config("", 1, guest_mib), over_serial);
        auto [sec] = co_await slow.async_start(use_tuple);
        BOOST_REQUIRE_MESSAGE(!sec, sec.message());
        auto [uec, none5] = co_await slow.async_snapshot(use_tuple);
        BOOST_TEST((uec == vm::snapshot_errc::unsupported_vm));
        BOOST_TEST(co_await shell_ok(slow, "echo still-running") == "still-running\n");
        // And the original is still fine after all this.
        BOOST_TEST(co_await shell_ok(original, "echo ok") == "ok\n");
    });
}
