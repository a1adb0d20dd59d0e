#include "vmm/vsock_host.hpp"

#define BOOST_TEST_MODULE vsock_host
#include <boost/test/unit_test.hpp>

#include "vmm/virtio_vsock_link.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

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
// guest got one some other way (an RX interrupt carrying the TX completions).
struct fake_link final : vmm::vsock_link {
    bool owes = false;
    int flushes = 0;
    std::function<void()> on_activity;
    error_code attach(kvm::vm&, devices::bus&, devices::bus&) override { return {}; }
    void start(std::function<void()> activity, std::shared_ptr<void>) override { on_activity = std::move(activity); }
    void stop() override {}
    void process() override {}
    bool owes_interrupt() const override { return owes; }
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
                         [this](vsock::muxer&) {
                             auto l = std::make_unique<fake_link>();
                             link = l.get();
                             return l;
                         },
                         [](const vsock::endpoint&) { return vm::vsock_stream{}; }};
    host_with_fake_link() { host.start(keep_alive); }
    ~host_with_fake_link() {
        host.stop();
        ctx.restart();
        ctx.poll();
    }
    // The guest moved packets: the link reports activity on the strand, as its workers do.
    void guest_activity() {
        asio::post(ctx, [this] { link->on_activity(); });
    }
    void run_for(std::chrono::milliseconds d) {
        ctx.restart();
        ctx.run_for(d);
    }
};
constexpr auto owed_delay = vmm::vsock_host::owed_interrupt_delay;
}  // namespace

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
