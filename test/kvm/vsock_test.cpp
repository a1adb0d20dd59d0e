// Host <-> guest vsock through the in-process device, against the guest's own Linux driver.
#include "mimobox/vm/vsock_stream.hpp"

#define BOOST_TEST_MODULE vsock
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/kvm_backend.hpp"
#include "vm_test_support.hpp"
#include "vsock/vsock_errc.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <random>

using namespace mimobox;
using namespace mimobox::test;
using vm::kvm_backend;
using vm::vsock_stream;
using boost::system::error_code;

namespace {

constexpr std::uint32_t echo_port = 5000;

asio::awaitable<void> boot_echo_guest(kvm_backend& vm) {
    auto [ec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_MESSAGE(!ec, "boot: " << ec.message());
    auto wec = co_await wait_console(vm, "MIMOBOX_VSOCK_SERVER=listening");
    BOOST_REQUIRE_MESSAGE(!wec, "echo server: " << wec.message() << "\n" << vm.console_output());
}

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::vector<std::uint8_t> v(n);
    for (auto& b : v) b = static_cast<std::uint8_t>(gen());
    return v;
}

// Writes `data` and reads the same number of bytes back, concurrently (the echo is streamed).
asio::awaitable<std::vector<std::uint8_t>> echo(kvm_backend& vm, vsock_stream& s, const std::vector<std::uint8_t>& data) {
    using namespace asio::experimental::awaitable_operators;
    std::vector<std::uint8_t> back(data.size());
    auto writer = [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!ec, "write: " << ec.message() << vm_report(vm));
    };
    auto reader = [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await asio::async_read(s, asio::buffer(back), asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!ec, "read: " << ec.message() << " after " << n << vm_report(vm));
    };
    co_await (writer() && reader());
    co_return back;
}

// Boots `cfg` (an echo guest), echoes `bytes` random bytes through one connection, checks them
// and stops the VM.
asio::awaitable<void> echo_through_new_guest(asio::io_context& ctx, vm::microvm_config cfg, std::size_t bytes, unsigned seed) {
    kvm_backend vm(ctx.get_executor(), std::move(cfg));
    co_await boot_echo_guest(vm);
    auto [ec, s] = co_await vm.async_vsock_connect(echo_port, asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_MESSAGE(!ec, "connect: " << ec.message());
    auto data = random_bytes(bytes, seed);
    auto back = co_await echo(vm, s, data);
    BOOST_TEST((back == data));
    co_await vm.async_stop(asio::use_awaitable);
}

}  // namespace

BOOST_AUTO_TEST_CASE(sixty_four_mib_of_random_bytes_echoed_through_the_guest_arrive_identical) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        co_await echo_through_new_guest(ctx, guest_config("mimobox.test=vsock-echo=5000", 2, 256), std::size_t(64) << 20, 1);
    });
}

// virtio-pci is the default; the virtio-mmio transport carries the same device.
BOOST_AUTO_TEST_CASE(the_virtio_mmio_transport_echoes_eight_mib_as_well) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        auto cfg = guest_config("mimobox.test=vsock-echo=5000", 1, 256);
        cfg.vsock = vm::vsock_link::virtio_mmio;
        co_await echo_through_new_guest(ctx, cfg, std::size_t(8) << 20, 3);
    });
}

BOOST_AUTO_TEST_CASE(thirty_two_concurrent_connections_each_echo_their_own_data) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=vsock-echo=5000", 2, 256));
        co_await boot_echo_guest(vm);
        int ok = 0;
        auto one = [&](unsigned i) -> asio::awaitable<void> {
            auto [ec, s] = co_await vm.async_vsock_connect(echo_port, asio::as_tuple(asio::use_awaitable));
            BOOST_REQUIRE_MESSAGE(!ec, "connect " << i << ": " << ec.message());
            auto data = random_bytes(64 * 1024, i + 100);
            if (co_await echo(vm, s, data) == data) ++ok;
        };
        std::vector<asio::awaitable<void>> all;
        for (unsigned i = 0; i < 32; ++i)
            asio::co_spawn(ctx, one(i), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
        for (int waited = 0; ok < 32 && waited < 1200; ++waited) {
            asio::steady_timer t(ctx, 100ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        BOOST_TEST(ok == 32);
        co_await vm.async_stop(asio::use_awaitable);
    });
}

BOOST_AUTO_TEST_CASE(guest_initiated_connection_is_accepted_by_host_listener) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=vsock-hello=6000"));
        auto [bec] = co_await vm.async_boot(asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE(!bec);
        auto [ec, s] = co_await vm.async_vsock_accept(6000, asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE_MESSAGE(!ec, "accept: " << ec.message());
        std::string got(20, '\0');
        auto [rec, n] = co_await asio::async_read(s, asio::buffer(got), asio::as_tuple(asio::use_awaitable));
        BOOST_TEST(!rec);
        BOOST_TEST(got == "hello from the guest");
        // The guest shut down its sending side: the next read is a clean end of stream.
        char more;
        auto [eec, m] = co_await s.async_read_some(asio::buffer(&more, 1), asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((eec == asio::error::eof));
        co_await asio::async_write(s, asio::buffer(std::string("hello from the host")), asio::use_awaitable);
        s.close();
        BOOST_TEST(!co_await wait_console(vm, "MIMOBOX_VSOCK_REPLY=hello from the host"));
        co_await vm.async_stop(asio::use_awaitable);
    });
}

BOOST_AUTO_TEST_CASE(connect_to_a_port_nobody_listens_on_is_refused) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=vsock-echo=5000"));
        co_await boot_echo_guest(vm);
        auto [ec, s] = co_await vm.async_vsock_connect(5999, asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((ec == vsock::vsock_errc::connection_refused), ec.message());
        co_await vm.async_stop(asio::use_awaitable);
    });
}

BOOST_AUTO_TEST_CASE(guest_closing_gives_host_end_of_stream) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=vsock-echo=5000"));
        co_await boot_echo_guest(vm);
        auto [ec, s] = co_await vm.async_vsock_connect(echo_port, asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE(!ec);
        co_await asio::async_write(s, asio::buffer(std::string("bye")), asio::use_awaitable);
        s.shutdown_write();  // the echo process reads EOF, exits, and its socket closes
        std::string back(3, '\0');
        co_await asio::async_read(s, asio::buffer(back), asio::use_awaitable);
        BOOST_TEST(back == "bye");
        char c;
        auto [rec, n] = co_await s.async_read_some(asio::buffer(&c, 1), asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((rec == asio::error::eof || rec == vsock::vsock_errc::connection_reset), rec.message());
        co_await vm.async_stop(asio::use_awaitable);
    });
}

BOOST_AUTO_TEST_CASE(stopping_the_vm_aborts_pending_operations) {
    run_coroutine([](asio::io_context& ctx) -> asio::awaitable<void> {
        kvm_backend vm(ctx.get_executor(), guest_config("mimobox.test=vsock-echo=5000"));
        co_await boot_echo_guest(vm);
        auto [ec, s] = co_await vm.async_vsock_connect(echo_port, asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE(!ec);
        error_code read_result, accept_result;
        char c;
        s.async_read_some(asio::buffer(&c, 1), [&](error_code e, std::size_t) { read_result = e; });
        vm.async_vsock_accept(7000, [&](error_code e, vsock_stream) { accept_result = e; });
        asio::steady_timer settle(ctx, 200ms);
        co_await settle.async_wait(asio::use_awaitable);
        co_await vm.async_stop(asio::use_awaitable);
        asio::steady_timer drain(ctx, 100ms);
        co_await drain.async_wait(asio::use_awaitable);
        BOOST_TEST((read_result == asio::error::operation_aborted), read_result.message());
        BOOST_TEST((accept_result == asio::error::operation_aborted), accept_result.message());
    });
}
