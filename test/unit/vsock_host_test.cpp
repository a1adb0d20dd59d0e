#include "vsock_host/vsock_host.hpp"

#define BOOST_TEST_MODULE vsock_host
#include <boost/test/unit_test.hpp>

#include "vsock_host/virtio_vsock_link.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <optional>

namespace asio = boost::asio;
using namespace mimobox;
using boost::system::error_code;

namespace {
// A vsock_host whose guest never brings its driver up: connects stay pending, as they do while
// a guest boots (or never finishes booting).
struct idle_guest {
    asio::io_context ctx;
    memory::guest_memory memory;
    vmm::vsock_host host{asio::make_strand(ctx.get_executor()), memory, 3, vm::vsock_link::virtio_mmio,
                         [](const vsock::endpoint&) { return vm::vsock_stream{}; }};
};

// A link whose interrupt state the test sets: it owes an interrupt until flushed or told the
// guest got one some other way (an RX interrupt carrying the TX completions). Each process()
// hands the guest whatever the muxer has for it; `delivered` records the operations.
struct fake_link final : vmm::packet_link {
    explicit fake_link(vsock::muxer& m) : mux(m) {}
    vsock::muxer& mux;
    bool owes = false;
    int flushes = 0, renotifies = 0;
    std::vector<vsock::op> delivered;
    std::function<void()> on_activity;
    error_code attach(kvm::vm&, devices::bus&, devices::bus&) override { return {}; }
    void start(std::function<void()> activity, std::shared_ptr<void>) override { on_activity = std::move(activity); }
    void stop() override {}
    void process() override {
        while (auto p = mux.poll_output(4096)) delivered.push_back(p->hdr.operation);
    }
    bool owes_interrupt() const override { return owes; }
    bool renotify() override {
        ++renotifies;
        return true;
    }
    void flush_interrupt() override {
        if (owes) ++flushes;
        owes = false;
    }
    std::string describe() const override { return "fake link"; }
};

// A started vsock_host over a fake_link: the owed-interrupt timer runs for real.
struct host_with_fake_link {
    asio::io_context ctx;
    fake_link* link = nullptr;
    std::shared_ptr<int> keep_alive = std::make_shared<int>(0);
    vmm::vsock_host host{asio::make_strand(ctx.get_executor()), 3,
                         [this](vsock::muxer& mux) {
                             auto l = std::make_unique<fake_link>(mux);
                             link = l.get();
                             return l;
                         },
                         [](const vsock::endpoint&) { return vm::vsock_stream{}; }};
    // The host's timers run on virtual time (vsock_clock), so a loaded machine cannot make a
    // watch look early or late.
    host_with_fake_link() {
        vmm::vsock_clock::freeze();
        host.start(keep_alive);
    }
    ~host_with_fake_link() {
        host.stop();
        ctx.restart();
        ctx.poll();
        vmm::vsock_clock::thaw();
    }
    // The guest moved packets: the link reports activity on the strand, as its workers do.
    void guest_activity() {
        asio::post(ctx, [this] { link->on_activity(); });
    }
    // `d` of virtual time, in steps of a twentieth; each step gives the io_context a little real
    // time to run what became due (timers re-check every millisecond while the clock is frozen).
    void run_for(std::chrono::milliseconds d) {
        const auto step = std::max<std::chrono::milliseconds>(d / 20, std::chrono::milliseconds(1));
        for (auto done = std::chrono::milliseconds(0); done < d; done += step) {
            vmm::vsock_clock::advance(std::min(step, d - done));
            ctx.restart();
            ctx.run_for(std::chrono::milliseconds(3));
        }
    }
    // A packet from the guest's side of connection guest port 7000 -> host port 1000.
    void guest_sends(vsock::op o, std::uint32_t flags = 0, std::span<const std::uint8_t> payload = {}) {
        vsock::header hdr;
        hdr.src_cid = 3;
        hdr.dst_cid = vsock::host_cid;
        hdr.src_port = 7000;
        hdr.dst_port = 1000;
        hdr.operation = o;
        hdr.flags = flags;
        hdr.buf_alloc = 64 * 1024;
        hdr.len = static_cast<std::uint32_t>(payload.size());
        link->mux.on_guest_packet(hdr, payload);
        guest_activity();
    }
    // An accepted connection the guest then answered on and shut down both ways (when
    // `guest_closes`), as the agent does; the answer is still unread, as when the host's
    // operation completes and drops its stream.
    vsock::endpoint accepted_connection(bool guest_closes) {
        std::optional<error_code> accepted;
        host.accept(1000, 1, [&](error_code ec, vm::vsock_stream) { accepted = ec; });
        guest_sends(vsock::op::request);
        if (guest_closes) {
            const std::uint8_t answer[3] = {'o', 'k', '\n'};
            guest_sends(vsock::op::rw, 0, answer);
            guest_sends(vsock::op::shutdown, vsock::shutdown_receive | vsock::shutdown_send);
        }
        run_for(std::chrono::milliseconds(10));
        BOOST_TEST_REQUIRE((accepted == error_code{}));
        link->delivered.clear();  // the RESPONSE
        return {3, 1000, 7000, vsock::host_cid};
    }
    std::size_t delivered(vsock::op o) const {
        return static_cast<std::size_t>(std::count(link->delivered.begin(), link->delivered.end(), o));
    }
};
constexpr auto owed_delay = vmm::vsock_host::owed_interrupt_delay;
constexpr auto quiet_limit = vmm::vsock_host::quiet_guest_limit;
}  // namespace

BOOST_AUTO_TEST_CASE(pci_configuration_ports_are_served_off_the_strand_only_with_the_virtio_pci_link) {
    asio::io_context ctx;
    memory::guest_memory memory;
    auto host_with = [&](vm::vsock_link kind) {
        return std::make_unique<vmm::vsock_host>(asio::make_strand(ctx.get_executor()), memory, 3, kind,
                                                 [](const vsock::endpoint&) { return vm::vsock_stream{}; });
    };
    auto pci = host_with(vm::vsock_link::virtio_pci);
    std::uint32_t address = 0x80000000u | 1u << 11;  // bus 0, device 1, register 0
    BOOST_TEST(pci->serve_port_on_vcpu_thread(0xcf8, true, std::span(reinterpret_cast<std::uint8_t*>(&address), 4)));
    std::uint32_t ids = 0;
    BOOST_TEST(pci->serve_port_on_vcpu_thread(0xcfc, false, std::span(reinterpret_cast<std::uint8_t*>(&ids), 4)));
    BOOST_TEST(ids == (0x1053u << 16 | 0x1af4u));  // virtio vendor, modern vsock
    BOOST_TEST(!pci->serve_port_on_vcpu_thread(0x3f8, false, std::span(reinterpret_cast<std::uint8_t*>(&ids), 1)));
    BOOST_TEST(!pci->serve_port_on_vcpu_thread(0xcfe, false, std::span(reinterpret_cast<std::uint8_t*>(&ids), 4)));  // runs past 0xcff
    auto mmio = host_with(vm::vsock_link::virtio_mmio);
    BOOST_TEST(!mmio->serve_port_on_vcpu_thread(0xcfc, false, std::span(reinterpret_cast<std::uint8_t*>(&ids), 4)));
}

BOOST_AUTO_TEST_CASE(an_owed_interrupt_is_flushed_after_the_delay_and_not_before) {
    host_with_fake_link h;
    h.link->owes = true;
    h.guest_activity();
    h.run_for(owed_delay / 2);
    BOOST_TEST(h.link->flushes == 0);
    h.run_for(owed_delay);  // well past the delay, measured from the activity
    BOOST_TEST(h.link->flushes == 1);
    h.run_for(owed_delay * 2);  // nothing owed any more: no timer, nothing raised
    BOOST_TEST(h.link->flushes == 1);
}

BOOST_AUTO_TEST_CASE(an_interrupt_raised_by_other_traffic_cancels_the_owed_flush) {
    host_with_fake_link h;
    h.link->owes = true;
    h.guest_activity();
    h.run_for(owed_delay / 4);
    h.link->owes = false;  // an RX interrupt carried the completions
    h.guest_activity();
    h.run_for(owed_delay * 2);
    BOOST_TEST(h.link->flushes == 0);
}

BOOST_AUTO_TEST_CASE(an_interrupt_owed_again_waits_its_own_full_delay) {
    host_with_fake_link h;
    h.link->owes = true;
    h.guest_activity();
    h.run_for(owed_delay / 4);
    h.link->owes = false;  // carried by an RX interrupt; the timer stays armed for the first debt
    h.guest_activity();
    h.run_for(owed_delay / 4);
    h.link->owes = true;  // owed again, half a delay after the first
    h.guest_activity();
    h.run_for(owed_delay * 3 / 4);  // past the first debt's deadline, short of the second's
    BOOST_TEST(h.link->flushes == 0);
    h.run_for(owed_delay);
    BOOST_TEST(h.link->flushes == 1);
}

BOOST_AUTO_TEST_CASE(steady_guest_activity_does_not_postpone_an_owed_interrupt_forever) {
    // The delay runs from when the interrupt became owed: activity that leaves it owed must not
    // restart it, or a guest sending without ever receiving would never get its buffers back.
    host_with_fake_link h;
    h.link->owes = true;
    for (int i = 0; i < 12 && h.link->flushes == 0; ++i) {
        h.guest_activity();
        h.link->owes = h.link->flushes == 0;
        h.run_for(owed_delay / 4);
    }
    BOOST_TEST(h.link->flushes == 1);
}

BOOST_AUTO_TEST_CASE(closing_a_connection_the_guest_already_closed_waits_for_the_next_exchange) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(true);
    h.host.release(ep);
    h.run_for(owed_delay / 4);
    BOOST_TEST(h.delivered(vsock::op::rst) == 0u);  // nothing else happened: it still waits
    h.guest_activity();                              // the next exchange carries it
    h.run_for(std::chrono::milliseconds(10));
    BOOST_TEST(h.delivered(vsock::op::rst) == 1u);
    BOOST_TEST(h.host.describe().find("7000") == std::string::npos);  // and the connection is gone
}

BOOST_AUTO_TEST_CASE(a_deferred_close_goes_out_on_its_own_after_the_delay) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(true);
    h.host.release(ep);
    h.run_for(owed_delay / 2);
    BOOST_TEST(h.delivered(vsock::op::rst) == 0u);
    h.run_for(owed_delay);
    BOOST_TEST(h.delivered(vsock::op::rst) == 1u);
    BOOST_TEST(h.host.describe().find("7000") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(closing_a_connection_the_guest_still_uses_is_not_deferred) {
    // The guest may be sending or waiting (a cancelled command): it must hear at once.
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    h.host.release(ep);
    h.run_for(std::chrono::milliseconds(10));
    BOOST_TEST(h.delivered(vsock::op::shutdown) == 1u);
}

BOOST_AUTO_TEST_CASE(a_read_waiting_for_data_completes_when_the_data_arrives) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    std::array<std::uint8_t, 8> buf{};
    std::optional<std::size_t> got;
    h.host.read(ep, {asio::buffer(buf)}, [&](error_code ec, std::size_t n) { got = ec ? 0 : n; });
    h.run_for(std::chrono::milliseconds(10));
    BOOST_TEST(!got.has_value());
    const std::uint8_t data[2] = {'h', 'i'};
    h.guest_sends(vsock::op::rw, 0, data);
    h.run_for(std::chrono::milliseconds(10));
    BOOST_TEST((got == std::size_t{2}));
    BOOST_TEST(buf[0] == 'h');
}

BOOST_AUTO_TEST_CASE(a_read_waiting_on_a_quiet_guest_raises_its_interrupt_again_each_quiet_period) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    std::array<std::uint8_t, 8> buf{};
    h.host.read(ep, {asio::buffer(buf)}, [](error_code, std::size_t) {});
    h.run_for(quiet_limit / 2);
    BOOST_TEST(h.link->renotifies == 0);
    h.run_for(quiet_limit * 3 / 4);
    BOOST_TEST(h.link->renotifies == 1);
    h.run_for(quiet_limit);
    BOOST_TEST(h.link->renotifies == 2);
}

BOOST_AUTO_TEST_CASE(a_paused_guest_gets_no_interrupts_raised_again_and_its_quiet_period_restarts_at_the_resume) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    std::array<std::uint8_t, 8> buf{};
    h.host.read(ep, {asio::buffer(buf)}, [](error_code, std::size_t) {});
    h.run_for(quiet_limit / 2);
    h.host.set_paused(true);  // as the machine does once its vCPUs have stopped
    h.run_for(quiet_limit * 5);
    BOOST_TEST(h.link->renotifies == 0);
    h.host.set_paused(false);
    h.run_for(quiet_limit * 3 / 4);
    BOOST_TEST(h.link->renotifies == 0);  // a full quiet period from the resume, not from before
    h.run_for(quiet_limit / 2);
    BOOST_TEST(h.link->renotifies == 1);
}

BOOST_AUTO_TEST_CASE(a_guest_that_keeps_moving_packets_gets_no_extra_interrupts) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    std::array<std::uint8_t, 8> buf{};
    h.host.read(ep, {asio::buffer(buf)}, [](error_code, std::size_t) {});
    for (int i = 0; i < 8; ++i) {
        h.guest_activity();
        h.run_for(quiet_limit / 4);
    }
    BOOST_TEST(h.link->renotifies == 0);
}

BOOST_AUTO_TEST_CASE(an_idle_connection_with_nothing_waiting_raises_nothing) {
    host_with_fake_link h;
    h.accepted_connection(false);
    h.run_for(quiet_limit * 3 / 2);
    BOOST_TEST(h.link->renotifies == 0);
}

BOOST_AUTO_TEST_CASE(a_read_of_data_already_buffered_completes_without_more_guest_activity) {
    host_with_fake_link h;
    const auto ep = h.accepted_connection(false);
    const std::uint8_t data[3] = {'a', 'b', 'c'};
    h.guest_sends(vsock::op::rw, 0, data);
    h.run_for(std::chrono::milliseconds(10));
    std::array<std::uint8_t, 8> buf{};
    std::optional<std::size_t> got;
    h.host.read(ep, {asio::buffer(buf)}, [&](error_code ec, std::size_t n) { got = ec ? 0 : n; });
    h.run_for(std::chrono::milliseconds(10));
    BOOST_TEST((got == std::size_t{3}));
}

BOOST_AUTO_TEST_CASE(the_virtio_link_serves_only_its_interrupt_registers_on_vcpu_threads) {
    idle_guest g;
    std::uint32_t v = 0xffffffff;
    auto word = std::span(reinterpret_cast<std::uint8_t*>(&v), 4);
    constexpr std::uint64_t base = vmm::virtio_vsock_link::mmio_base;
    BOOST_TEST(g.host.serve_on_vcpu_thread(base + 0x60, false, word));
    BOOST_TEST(v == 0u);  // nothing signalled
    BOOST_TEST(g.host.serve_on_vcpu_thread(base + 0x64, true, word));
    BOOST_TEST(!g.host.serve_on_vcpu_thread(base + 0x70, false, word));  // device status: strand only
    BOOST_TEST(!g.host.serve_on_vcpu_thread(base + vmm::virtio_vsock_link::mmio_size + 0x60, false, word));
    BOOST_TEST(!g.host.serve_on_vcpu_thread(base - 0x1000 + 0x60, false, word));
}

BOOST_AUTO_TEST_CASE(a_connect_the_guest_never_answers_completes_with_operation_aborted_when_cancelled) {
    idle_guest g;
    std::optional<error_code> first, second;
    g.host.connect(52, 1, [&](error_code ec, vm::vsock_stream) { first = ec; });
    g.host.connect(52, 2, [&](error_code ec, vm::vsock_stream) { second = ec; });
    g.ctx.poll();
    BOOST_TEST(!first.has_value());
    g.host.cancel_wait(1);
    g.ctx.restart();
    g.ctx.poll();
    BOOST_TEST((first == asio::error::operation_aborted));
    BOOST_TEST(!second.has_value());  // only the one cancelled
    g.host.cancel_wait(1);            // already done: nothing happens
    g.host.stop();
    g.ctx.restart();
    g.ctx.poll();
    BOOST_TEST((second == asio::error::operation_aborted));
}

BOOST_AUTO_TEST_CASE(a_cancelled_accept_completes_and_later_ones_still_wait) {
    idle_guest g;
    std::optional<error_code> a, b;
    g.host.accept(1000, 5, [&](error_code ec, vm::vsock_stream) { a = ec; });
    g.host.accept(1000, 6, [&](error_code ec, vm::vsock_stream) { b = ec; });
    g.host.cancel_wait(5);
    g.ctx.poll();
    BOOST_TEST((a == asio::error::operation_aborted));
    BOOST_TEST(!b.has_value());
    g.host.stop();
    g.ctx.restart();
    g.ctx.poll();
    BOOST_TEST((b == asio::error::operation_aborted));
}
