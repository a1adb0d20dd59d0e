#include "vmm/vsock_host.hpp"

#define BOOST_TEST_MODULE vsock_host
#include <boost/test/unit_test.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

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
}  // namespace

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
