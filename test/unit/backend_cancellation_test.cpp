// Per-operation cancellation of the backend's waits, on a VM that never boots (no KVM needed):
// the handler must complete with operation_aborted on the io_context that runs the backend,
// from inside run(), never inline in emit() and never on a foreign thread.
#include "mimobox/vm/kvm_backend.hpp"
#include "mimobox/vm/error.hpp"

#define BOOST_TEST_MODULE backend_cancellation
#include <boost/test/unit_test.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

#include <optional>
#include <thread>

namespace asio = boost::asio;
using mimobox::vm::kvm_backend;
using mimobox::vm::microvm_config;
using boost::system::error_code;

namespace {

struct completion_record {
    std::optional<error_code> ec;
    bool inside_run = false;
    std::thread::id thread;
};

// A completion handler for any `void(error_code, ...)` signature that records where it ran.
auto recorder(completion_record& rec, asio::io_context& ctx) {
    return [&rec, &ctx](error_code ec, auto&&...) {
        rec.ec = ec;
        rec.inside_run = ctx.get_executor().running_in_this_thread();
        rec.thread = std::this_thread::get_id();
    };
}

microvm_config never_booted_config() {
    microvm_config c;
    c.kernel = "/nonexistent/bzImage";  // never read: the VM is not booted
    return c;
}

}  // namespace

// Starts a wait through `initiate(vm, handler)`, lets it register, cancels it and checks how it ended.
template <class Initiate>
void check_cancelled_inside_run(Initiate initiate) {
    asio::io_context ctx;
    kvm_backend vm(ctx.get_executor(), never_booted_config());
    asio::cancellation_signal signal;
    completion_record rec;
    initiate(vm, asio::bind_cancellation_slot(signal.slot(), recorder(rec, ctx)));
    ctx.poll();  // the wait is registered
    BOOST_TEST(!rec.ec.has_value());
    signal.emit(asio::cancellation_type::terminal);
    BOOST_TEST(!rec.ec.has_value());  // never completed inline inside emit()
    ctx.restart();
    ctx.run();
    BOOST_REQUIRE(rec.ec.has_value());
    BOOST_TEST(*rec.ec == asio::error::operation_aborted);
    BOOST_TEST(rec.inside_run);
    BOOST_TEST((rec.thread == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(cancelling_wait_console_completes_with_operation_aborted_inside_run) {
    check_cancelled_inside_run([](kvm_backend& vm, auto handler) { vm.async_wait_console("never printed", std::move(handler)); });
}

BOOST_AUTO_TEST_CASE(cancelling_wait_stopped_completes_with_operation_aborted_inside_run) {
    check_cancelled_inside_run([](kvm_backend& vm, auto handler) { vm.async_wait_stopped(std::move(handler)); });
}

BOOST_AUTO_TEST_CASE(destroying_a_never_booted_backend_completes_its_pending_waits) {
    asio::io_context ctx;
    completion_record stopped, console;
    std::optional<mimobox::vm::kvm_exit_reason> reason;
    {
        kvm_backend vm(ctx.get_executor(), never_booted_config());
        vm.async_wait_stopped([&](error_code ec, mimobox::vm::vm_stop_info info) {
            stopped.ec = ec;
            stopped.inside_run = ctx.get_executor().running_in_this_thread();
            reason = info.reason;
        });
        vm.async_wait_console("never printed", [&](error_code ec) { console.ec = ec; });
        ctx.poll();
    }
    ctx.restart();
    ctx.run();
    BOOST_REQUIRE(stopped.ec.has_value());
    BOOST_TEST(!*stopped.ec);
    BOOST_TEST(stopped.inside_run);
    BOOST_TEST((reason == mimobox::vm::kvm_exit_reason::host_stop));
    BOOST_REQUIRE(console.ec.has_value());
    BOOST_TEST((*console.ec == mimobox::vm::lifecycle_errc::vm_stopped));
}

BOOST_AUTO_TEST_CASE(stopping_a_never_booted_backend_completes_its_pending_waits) {
    asio::io_context ctx;
    kvm_backend vm(ctx.get_executor(), never_booted_config());
    std::optional<error_code> waited, stopped;
    vm.async_wait_stopped([&](error_code ec, mimobox::vm::vm_stop_info) { waited = ec; });
    vm.async_stop([&](error_code ec) { stopped = ec; });
    ctx.run();
    BOOST_REQUIRE(waited.has_value());
    BOOST_REQUIRE(stopped.has_value());
    BOOST_TEST(!*waited);
    BOOST_TEST(!*stopped);
    BOOST_TEST((vm.state() == mimobox::vm::kvm_lifecycle::stopped));
}

BOOST_AUTO_TEST_CASE(cancellation_emitted_right_after_initiation_is_not_lost) {
    asio::io_context ctx;
    kvm_backend vm(ctx.get_executor(), never_booted_config());
    asio::cancellation_signal signal;
    completion_record rec;
    vm.async_wait_console("never printed", asio::bind_cancellation_slot(signal.slot(), recorder(rec, ctx)));
    signal.emit(asio::cancellation_type::terminal);  // before the io_context ran anything
    ctx.run();
    BOOST_REQUIRE(rec.ec.has_value());
    BOOST_TEST(*rec.ec == asio::error::operation_aborted);
    BOOST_TEST(rec.inside_run);
}
