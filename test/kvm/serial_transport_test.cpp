// kvm_transport::serial end to end: the same agent protocol over COM2 instead of virtio-vsock.
// The guest gets no virtio device at all, so every byte here crossed the emulated UART.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE serial_transport
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vm_test_support.hpp"

#include <chrono>
#include <cstdio>

using namespace mimobox;
using namespace mimobox::test;
using vm::guest_exec_options;
using vm::microvm_sandbox;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Outside coroutines, for GCC 12 (see sandbox_test.cpp).
vm::sandbox_config serial_config() {
    vm::sandbox_config c;
    c.transport = vm::kvm_transport::serial;
    return c;
}
std::vector<std::string> sh(const std::string& command) { return {"sh", "-c", command}; }
guest_exec_options with_stdin(std::string data) {
    guest_exec_options o;
    o.stdin_data = std::move(data);
    return o;
}
// Progress on stderr: a step of this test takes seconds under nested emulation.
void step(const char* what) {
    static const auto start = std::chrono::steady_clock::now();
    std::fprintf(stderr, "serial_transport_test: %6.1f s %s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), what);
}

asio::awaitable<vm::guest_command_result> exec(microvm_sandbox& sb, std::vector<std::string> args, guest_exec_options o) {
    auto [ec, r] = co_await sb.async_exec(std::move(args), std::move(o), use_tuple);
    BOOST_REQUIRE_MESSAGE(!ec, "exec: " << ec.message() << vm_report(sb));
    co_return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_serial_transport_runs_commands_takes_stdin_and_moves_files_without_virtio) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        const auto config = serial_config();
        // Constructed, then started: a failed start still has a VM whose console tells why.
        microvm_sandbox sb(ctx.get_executor(), guest_config("", 1, 256), config);
        auto [ec] = co_await sb.async_start(use_tuple);
        BOOST_REQUIRE_MESSAGE(!ec, "sandbox: " << ec.message() << vm_report(sb));
        BOOST_TEST(!sb.agent_version().empty());
        step("agent ready");

        // No virtio device in this guest: the agent was reached over ttyS1.
        auto devices = co_await exec(sb, sh("ls /sys/bus/virtio/devices | wc -l; cat /proc/tty/driver/serial | grep -c '^1: uart:16550A'"),
                                     guest_exec_options());
        BOOST_TEST(devices.stdout_data == "0\n1\n");

        step("no virtio checked");
        auto r124 = co_await exec(sb, sh("echo to-err >&2; echo to-out; exit 124"), guest_exec_options());
        BOOST_TEST(r124.exit_code == 124);
        BOOST_TEST(!r124.timed_out);
        BOOST_TEST(r124.stdout_data == "to-out\n");
        BOOST_TEST(r124.stderr_data == "to-err\n");

        // Every byte value, twice the guest tty's 4 KiB buffer. Small, because under nested
        // emulation each byte costs the guest two or three trapped port accesses (about 1 KB/s).
        std::string input(8 * 1024, '\0');
        for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>(i * 13 + 7);
        std::vector<std::string> cat{"cat"};
        step("exit code and stderr checked");
        auto echoed = co_await exec(sb, cat, with_stdin(input));
        BOOST_TEST(echoed.exit_code == 0);
        BOOST_TEST((echoed.stdout_data == input));

        step("8 KiB through cat");
        auto [wec] = co_await sb.async_write_file("/tmp/blob", input, use_tuple);
        BOOST_REQUIRE_MESSAGE(!wec, "write_file: " << wec.message() << vm_report(sb));
        step("8 KiB file written");
        auto [rec, back] = co_await sb.async_read_file("/tmp/blob", use_tuple);
        BOOST_REQUIRE_MESSAGE(!rec, "read_file: " << rec.message() << vm_report(sb));
        step("8 KiB file read");
        BOOST_TEST((back == input));
        auto [mec, missing] = co_await sb.async_read_file("/tmp/no-such-file", use_tuple);
        BOOST_TEST((mec == vm::guest_file_errc::not_found));

        // Connections share the line fairly: several execs at once all finish.
        constexpr int count = 8;
        int done = 0, correct = 0;
        for (int i = 0; i < count; ++i) {
            std::vector<std::string> args{"echo", std::to_string(i)};
            sb.async_exec(std::move(args), guest_exec_options(), [&, i](error_code e, vm::guest_command_result r) {
                ++done;
                if (!e && r.stdout_data == std::to_string(i) + "\n") ++correct;
            });
        }
        for (int i = 0; i < 1200 && done < count; ++i) {
            asio::steady_timer t(ctx, std::chrono::milliseconds(100));
            co_await t.async_wait(use_tuple);
        }
        BOOST_TEST(done == count);
        BOOST_TEST(correct == count);
        step("concurrent execs");

        // For the record, not a pass criterion: how slow the line is next to virtio.
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::string> true_argv{"true"};
        for (int i = 0; i < 5; ++i) co_await exec(sb, true_argv, guest_exec_options());
        const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 5;
        BOOST_TEST_MESSAGE("serial transport: exec round trip of true " << ms << " ms (in this environment)");

        auto [dec] = co_await sb.async_destroy(use_tuple);
        BOOST_TEST(!dec);
    });
}
