// vsock throughput, as JSON lines, each against memcpy bandwidth measured in the same run.
//   vsock_bench mock [MIB]    the device model alone (native, no KVM): host->guest and
//                             guest->host through mock rings; key vsock_mock_vs_memcpy
//   vsock_bench guest [MIB]   a real guest (needs KVM or the harness): host->guest into a sink,
//                             guest->host from a generator; keys vsock_*_mib_s and *_vs_memcpy
#include <mimobox/vm/kvm_backend.hpp>

#include "../test/support/vsock_rig.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono;
using namespace mimobox;

namespace {

double seconds_since(steady_clock::time_point t) { return duration<double>(steady_clock::now() - t).count(); }

// memcpy of `bytes` in 64 KiB blocks between two buffers larger than the last-level cache.
double memcpy_mib_s(std::size_t bytes) {
    std::vector<std::uint8_t> a(64u << 20, 1), b(64u << 20, 2);
    auto start = steady_clock::now();
    std::size_t off = 0;
    for (std::size_t done = 0; done < bytes; done += 65536) {
        std::memcpy(b.data() + off, a.data() + off, 65536);
        off = (off + 65536) % a.size();
    }
    volatile std::uint8_t sink = b[off];
    (void)sink;
    return double(bytes) / (1 << 20) / seconds_since(start);
}

int run_mock(std::size_t mib) {
    const std::size_t bytes = mib << 20;
    test::vsock_rig rig(256);
    rig.mux.listen(1234);
    rig.post_rx_buffers(8, 64 * 1024);
    rig.guest_send(rig.guest_header(vsock::op::request, 5000, 1234));
    (void)rig.received(64 * 1024);
    auto ep = rig.mux.take_accepted(1234).value();
    auto* conn = rig.mux.find(ep);

    // host -> guest: the host writes, the guest posts 64 KiB RX buffers and takes them back.
    std::vector<std::uint8_t> block(64 * 1024, 0x42);
    std::size_t moved = 0;
    auto start = steady_clock::now();
    while (moved < bytes) {
        conn->write(block);
        if (rig.rx->free_descriptors() >= 4) rig.post_rx_buffers(4, 64 * 1024);
        else rig.wr(0x50, 0);
        while (auto used = rig.rx->take_used()) moved += used->second > vsock::header_size ? used->second - vsock::header_size : 0;
        // The guest's reader keeps up: acknowledge what arrived so credit never runs out.
        auto ack = rig.guest_header(vsock::op::credit_update, 5000, 1234);
        ack.fwd_cnt = static_cast<std::uint32_t>(moved);
        rig.mux.on_guest_packet(ack, {});
    }
    const double h2g = double(moved) / (1 << 20) / seconds_since(start);

    // guest -> host: 4 KiB packets as Linux sends them, the host reads them out.
    std::vector<std::uint8_t> payload(4096, 0x17), sink(1 << 20);
    std::size_t received = 0;
    start = steady_clock::now();
    while (received < bytes) {
        for (int i = 0; i < 32; ++i) {
            auto h = rig.guest_header(vsock::op::rw, 5000, 1234, 4096);
            auto hdr = vsock::encode(h);
            rig.tx->offer({std::vector<std::uint8_t>(hdr.begin(), hdr.end()), payload}, {});
        }
        rig.wr(0x50, 1);
        while (rig.tx->take_used()) {
        }
        while (conn->readable()) received += conn->read(sink);
        (void)rig.received(4096);
        if (rig.rx->free_descriptors() >= 2) rig.post_rx_buffers(2, 4096);  // room for credit updates
    }
    const double g2h = double(received) / (1 << 20) / seconds_since(start);
    const double mem = memcpy_mib_s(bytes);
    std::printf("{\"bench\":\"vsock_device_model\",\"mib\":%zu,\"host_to_guest_mib_s\":%.0f,\"guest_to_host_mib_s\":%.0f,"
                "\"memcpy_mib_s\":%.0f,\"vsock_mock_vs_memcpy\":%.3f}\n",
                mib, h2g, g2h, mem, std::min(h2g, g2h) / mem);
    return 0;
}

int run_guest(std::size_t mib) {
    const char* dir = std::getenv("MIMOBOX_VM_ASSETS_DIR");
    if (!dir) {
        std::cerr << "MIMOBOX_VM_ASSETS_DIR is not set\n";
        return 2;
    }
    vm::microvm_config cfg;
    cfg.kernel = std::filesystem::path(dir) / "bzImage";
    cfg.initramfs = std::filesystem::path(dir) / "initramfs.cpio.gz";
    cfg.vcpu_count = 2;
    cfg.memory_mib = 256;
    cfg.cmdline_extra = "mimobox.test=vsock-bench=5000";
    const std::uint64_t bytes = std::uint64_t(mib) << 20;
    double h2g = 0, g2h = 0;
    int status = 1;
    asio::io_context ctx;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        vm::kvm_backend vm(ctx.get_executor(), cfg);
        co_await vm.async_boot(asio::use_awaitable);
        co_await vm.async_wait_console("MIMOBOX_VSOCK_SERVER=listening", asio::use_awaitable);
        {
            auto s = co_await vm.async_vsock_connect(5000, asio::use_awaitable);
            std::vector<std::uint8_t> block(256 * 1024, 0x33);
            co_await asio::async_write(s, asio::buffer("S", 1), asio::use_awaitable);
            auto start = steady_clock::now();
            for (std::uint64_t sent = 0; sent < bytes; sent += block.size())
                co_await asio::async_write(s, asio::buffer(block), asio::use_awaitable);
            s.shutdown_write();
            std::uint64_t count = 0;
            co_await asio::async_read(s, asio::buffer(&count, sizeof count), asio::use_awaitable);
            h2g = double(count) / (1 << 20) / seconds_since(start);
        }
        {
            auto s = co_await vm.async_vsock_connect(5000, asio::use_awaitable);
            char cmd[9] = {'G'};
            std::memcpy(cmd + 1, &bytes, 8);
            co_await asio::async_write(s, asio::buffer(cmd), asio::use_awaitable);
            std::vector<std::uint8_t> buf(256 * 1024);
            auto start = steady_clock::now();
            std::uint64_t got = 0;
            while (got < bytes) {
                auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
                if (ec) break;
                got += n;
            }
            g2h = double(got) / (1 << 20) / seconds_since(start);
        }
        co_await vm.async_stop(asio::use_awaitable);
        status = 0;
    }, [](std::exception_ptr e) {
        if (e) try { std::rethrow_exception(e); } catch (const std::exception& x) { std::cerr << "vsock_bench: " << x.what() << "\n"; }
    });
    ctx.run();
    if (status) return status;
    const double mem = memcpy_mib_s(bytes);
    std::printf("{\"bench\":\"vsock_guest\",\"mib\":%zu,\"host_to_guest_mib_s\":%.1f,\"guest_to_host_mib_s\":%.1f,"
                "\"memcpy_mib_s\":%.0f,\"host_to_guest_vs_memcpy\":%.4f,\"guest_to_host_vs_memcpy\":%.4f}\n",
                mib, h2g, g2h, mem, h2g / mem, g2h / mem);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode = argc > 1 ? argv[1] : "mock";
    std::size_t mib = argc > 2 ? std::stoul(argv[2]) : 256;
    if (mode == "mock") return run_mock(mib);
    if (mode == "guest") return run_guest(mib);
    std::cerr << "usage: vsock_bench mock|guest [MIB]\n";
    return 2;
}
