// The VMM booting the project's guest kernel and initramfs (label kvm).
#include "mimobox/vm/kvm_backend.hpp"

#define BOOST_TEST_MODULE boot
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vm_test_support.hpp"

#include <dirent.h>
#include <regex>


using namespace mimobox;
using namespace mimobox::test;
using vm::kvm_backend;
using vm::kvm_exit_reason;
using vm::kvm_lifecycle;
using boost::system::error_code;

namespace {

asio::awaitable<void> boot_or_fail(kvm_backend& vm) {
    auto [ec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_MESSAGE(!ec, "boot: " << ec.message());
}

asio::awaitable<void> stop_or_fail(kvm_backend& vm) {
    auto [ec] = co_await vm.async_stop(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_MESSAGE(!ec, "stop: " << ec.message());
    BOOST_TEST((vm.state() == kvm_lifecycle::stopped));
}


unsigned long last_counter(const std::string& console) {
    static const std::regex counter("MIMOBOX_COUNT=([0-9]+)");
    unsigned long last = 0;
    for (std::sregex_iterator it(console.begin(), console.end(), counter), end; it != end; ++it)
        last = std::stoul((*it)[1]);
    return last;
}

}  // namespace

BOOST_AUTO_TEST_CASE(boots_to_init_and_reports_ready_marker) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=idle"));
        BOOST_TEST((vm.state() == kvm_lifecycle::created));
        co_await boot_or_fail(vm);
        BOOST_TEST((vm.state() == kvm_lifecycle::running));
        auto ec = co_await wait_console(vm, "MIMOBOX_READY");
        BOOST_REQUIRE_MESSAGE(!ec, "ready marker: " << ec.message() << "\nconsole:\n" << vm.console_output());
        co_await stop_or_fail(vm);
        auto [wec, info] = co_await vm.async_wait_stopped(asio::as_tuple(asio::use_awaitable));
        BOOST_TEST(!wec);
        BOOST_TEST((info.reason == kvm_exit_reason::host_stop));
    });
}

BOOST_AUTO_TEST_CASE(two_vcpus_boot_and_guest_sees_two_cpus_online) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=cpus", 2));
        co_await boot_or_fail(vm);
        auto ec = co_await wait_console(vm, "MIMOBOX_CPUS=");
        BOOST_REQUIRE_MESSAGE(!ec, "cpu count: " << ec.message() << "\nconsole:\n" << vm.console_output());
        BOOST_TEST(vm.console_output().find("MIMOBOX_CPUS=2\n") != std::string::npos, vm.console_output());
        co_await stop_or_fail(vm);
    });
}

BOOST_AUTO_TEST_CASE(init_exit_stops_vm_as_a_reboot_with_the_panic_line_as_a_hint) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=exit=3"));
        co_await boot_or_fail(vm);
        asio::steady_timer limit(ctx, guest_timeout);
        using namespace asio::experimental::awaitable_operators;
        auto r = co_await (vm.async_wait_stopped(asio::as_tuple(asio::use_awaitable)) ||
                           limit.async_wait(asio::as_tuple(asio::use_awaitable)));
        BOOST_REQUIRE_MESSAGE(r.index() == 0, "VM did not stop; console:\n" << vm.console_output());
        auto [ec, info] = std::get<0>(r);
        BOOST_TEST(!ec);
        BOOST_TEST((vm.state() == kvm_lifecycle::stopped));
        // The reason is the VM's exit (panic=-1 reboots: a triple fault); the console's panic
        // line comes along as a hint only, since a guest program could print it too.
        BOOST_TEST((info.reason == kvm_exit_reason::guest_reboot), "reason " << to_string(info.reason));
        BOOST_TEST(info.console_panic_line.find("Kernel panic") != std::string::npos, info.console_panic_line);
        BOOST_TEST(info.console_tail.find("MIMOBOX_EXIT=3") != std::string::npos, info.console_tail);
        // Operations after the stop are refused with a lifecycle error, and stop is idempotent.
        auto [pec] = co_await vm.async_pause(asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((pec == vm::lifecycle_errc::invalid_state));
        co_await stop_or_fail(vm);
    });
}

BOOST_AUTO_TEST_CASE(guest_reboot_request_stops_vm_as_reboot) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=reboot"));
        co_await boot_or_fail(vm);
        asio::steady_timer limit(ctx, guest_timeout);
        using namespace asio::experimental::awaitable_operators;
        auto r = co_await (vm.async_wait_stopped(asio::as_tuple(asio::use_awaitable)) ||
                           limit.async_wait(asio::as_tuple(asio::use_awaitable)));
        BOOST_REQUIRE_MESSAGE(r.index() == 0, "VM did not stop; console:\n" << vm.console_output());
        BOOST_TEST((std::get<1>(std::get<0>(r)).reason == kvm_exit_reason::guest_reboot));
    });
}

BOOST_AUTO_TEST_CASE(paused_guest_makes_no_progress_and_resumes) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=count"));
        co_await boot_or_fail(vm);
        BOOST_REQUIRE(!co_await wait_console(vm, "MIMOBOX_COUNT=3\n"));
        auto [pec] = co_await vm.async_pause(asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!pec, "pause: " << pec.message());
        BOOST_TEST((vm.state() == kvm_lifecycle::paused));
        auto paused_output = vm.console_output();
        asio::steady_timer idle(ctx, 500ms);
        co_await idle.async_wait(asio::use_awaitable);
        BOOST_TEST(vm.console_output() == paused_output, "guest printed while paused");
        auto at_pause = last_counter(paused_output);

        auto [rec] = co_await vm.async_resume(asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!rec, "resume: " << rec.message());
        BOOST_TEST((vm.state() == kvm_lifecycle::running));
        auto next = "MIMOBOX_COUNT=" + std::to_string(at_pause + 3) + "\n";
        BOOST_TEST(!co_await wait_console(vm, next), "counter did not continue after resume");
        co_await stop_or_fail(vm);
    });
}

BOOST_AUTO_TEST_CASE(boot_stop_cycles_leave_threads_and_fds_unchanged) {
    // Warm-up cycle: the first boot creates process-wide things (the kick signal handler,
    // Asio's scheduler internals) that legitimately stay.
    auto cycle = [](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=idle"));
        co_await boot_or_fail(vm);
        BOOST_REQUIRE(!co_await wait_console(vm, "MIMOBOX_READY"));
        co_await stop_or_fail(vm);
    };
    run_coroutine(cycle);
    const auto threads_before = count_entries("/proc/self/task");
    const auto fds_before = count_entries("/proc/self/fd");
    const int cycles = test_scale(20, 5);
    for (int i = 0; i < cycles; ++i) run_coroutine(cycle);
    BOOST_TEST_MESSAGE(cycles << " boot/stop cycles");
    BOOST_TEST(count_entries("/proc/self/task") == threads_before);
    BOOST_TEST(count_entries("/proc/self/fd") == fds_before);
}

BOOST_AUTO_TEST_CASE(stop_before_boot_and_boot_twice_are_lifecycle_errors) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=idle"));
        auto [rec] = co_await vm.async_resume(asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((rec == vm::lifecycle_errc::invalid_state));
        co_await boot_or_fail(vm);
        auto [bec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((bec == vm::lifecycle_errc::invalid_state));
        co_await stop_or_fail(vm);
    });
}

BOOST_AUTO_TEST_CASE(destroying_a_running_backend_stops_the_vm_and_joins_its_threads) {
    const auto threads_before = count_entries("/proc/self/task");
    asio::io_context ctx;
    bool booted = false;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=count", 2));
        co_await boot_or_fail(vm);
        BOOST_REQUIRE(!co_await wait_console(vm, "MIMOBOX_COUNT=2\n"));
        booted = true;
        // vm goes out of scope while both vCPUs run.
    }, asio::detached);
    ctx.run_for(300s);
    BOOST_TEST(booted);
    BOOST_TEST(ctx.stopped(), "the io_context still had work: the VM did not stop");
    BOOST_TEST(count_entries("/proc/self/task") == threads_before);
}

BOOST_AUTO_TEST_CASE(elf_vmlinux_boots_through_the_64bit_entry) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto cfg = guest_config("mimobox.test=idle");
        cfg.kernel = assets_dir() / "vmlinux";
        kvm_backend vm(ctx.get_executor(), cfg);
        co_await boot_or_fail(vm);
        auto ec = co_await wait_console(vm, "MIMOBOX_READY");
        BOOST_REQUIRE_MESSAGE(!ec, "ready marker: " << ec.message() << "\nconsole:\n" << vm.console_output());
        co_await stop_or_fail(vm);
    });
}

BOOST_AUTO_TEST_CASE(guest_vsock_driver_finds_the_device_and_gets_rst_without_listener) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto cfg = guest_config("mimobox.test=vsock=4444");
        cfg.vsock_cid = 7;
        kvm_backend vm(ctx.get_executor(), cfg);
        co_await boot_or_fail(vm);
        auto ec = co_await wait_console(vm, "MIMOBOX_VSOCK_CONNECT=");
        BOOST_REQUIRE_MESSAGE(!ec, "vsock probe: " << ec.message() << "\nconsole:\n" << vm.console_output());
        auto out = vm.console_output();
        BOOST_TEST(out.find("MIMOBOX_VSOCK_CID=7\n") != std::string::npos, out);
        // Nobody listens on the host: the muxer answers the guest's REQUEST with RST.
        BOOST_TEST(out.find("MIMOBOX_VSOCK_CONNECT=Connection reset by peer") != std::string::npos, out);
        co_await stop_or_fail(vm);
    });
}
