// microvm_sandbox without KVM: the state machine, misuse, bad configs and bad paths, all of which
// are decided before a VM runs.
#include "mimobox/vm/microvm_sandbox.hpp"

#define BOOST_TEST_MODULE sandbox_lifecycle
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "sandbox/spawn_operation.hpp"

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <boost/asio/io_context.hpp>

#include <optional>

namespace asio = boost::asio;
using namespace mimobox::vm;
using boost::system::error_code;

namespace {

microvm_config missing_kernel() {
    microvm_config c;
    c.kernel = "/nonexistent/bzImage";
    c.initramfs = "/nonexistent/initramfs.cpio.gz";
    return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(transition_table_allows_only_the_documented_moves) {
    using s = microvm_state;
    BOOST_TEST(is_valid_transition(s::created, s::booting));
    BOOST_TEST(is_valid_transition(s::booting, s::ready));
    BOOST_TEST(is_valid_transition(s::booting, s::failed));
    BOOST_TEST(is_valid_transition(s::ready, s::failed));
    BOOST_TEST(is_valid_transition(s::ready, s::destroying));
    BOOST_TEST(is_valid_transition(s::destroying, s::destroyed));
    BOOST_TEST(!is_valid_transition(s::created, s::ready));
    BOOST_TEST(!is_valid_transition(s::destroyed, s::booting));
    BOOST_TEST(!is_valid_transition(s::destroyed, s::destroying));
    BOOST_TEST(!is_valid_transition(s::failed, s::ready));
    BOOST_TEST(to_string(s::ready) == "ready");
}

BOOST_AUTO_TEST_CASE(operations_before_start_are_invalid_state_and_complete_inside_run) {
    asio::io_context ctx;
    microvm_sandbox sb(ctx.get_executor(), missing_kernel());
    BOOST_TEST((sb.state() == microvm_state::created));
    std::optional<error_code> exec_ec, read_ec, stream_ec;
    bool inside_run = false;
    sb.async_exec({"true"}, {}, [&](error_code ec, guest_command_result) {
        exec_ec = ec;
        inside_run = ctx.get_executor().running_in_this_thread();
    });
    sb.async_read_file("/etc/hostname", [&](error_code ec, std::string) { read_ec = ec; });
    sb.async_exec_stream({"true"}, {}, [&](error_code ec, exec_stream) { stream_ec = ec; });
    BOOST_TEST(!exec_ec.has_value());  // never inline
    ctx.run();
    BOOST_TEST((exec_ec == lifecycle_errc::invalid_state));
    BOOST_TEST((read_ec == lifecycle_errc::invalid_state));
    BOOST_TEST((stream_ec == lifecycle_errc::invalid_state));
    BOOST_TEST(inside_run);
}

BOOST_AUTO_TEST_CASE(a_relative_guest_path_is_refused_before_anything_is_sent) {
    asio::io_context ctx;
    microvm_sandbox sb(ctx.get_executor(), missing_kernel());
    std::optional<error_code> ec;
    sb.async_write_file("relative/file", "data", [&](error_code e) { ec = e; });
    ctx.run();
    BOOST_TEST((ec == guest_file_errc::invalid_path));
}

BOOST_AUTO_TEST_CASE(starting_with_a_missing_kernel_fails_with_a_config_error_and_state_failed) {
    asio::io_context ctx;
    microvm_sandbox sb(ctx.get_executor(), missing_kernel());
    std::optional<error_code> ec;
    sb.async_start([&](error_code e) { ec = e; });
    ctx.run();
    BOOST_REQUIRE(ec.has_value());
    BOOST_TEST((ec->category() == microvm_category()), ec->message());
    BOOST_TEST((sb.state() == microvm_state::failed));
    // A failed sandbox refuses a second start.
    std::optional<error_code> again;
    sb.async_start([&](error_code e) { again = e; });
    ctx.restart();
    ctx.run();
    BOOST_TEST((again == lifecycle_errc::invalid_state));
}

BOOST_AUTO_TEST_CASE(the_serial_transport_selects_the_com2_vsock_link) {
    asio::io_context ctx;
    sandbox_config config;
    config.transport = kvm_transport::serial;
    microvm_sandbox sb(ctx.get_executor(), missing_kernel(), config);
    BOOST_TEST((sb.backend().config().vsock == vsock_link::com2_uart));
    microvm_sandbox plain(ctx.get_executor(), missing_kernel(), sandbox_config{});
    BOOST_TEST((plain.backend().config().vsock == vsock_link::virtio_pci));
}

BOOST_AUTO_TEST_CASE(an_unknown_transport_is_refused_as_unsupported) {
    asio::io_context ctx;
    sandbox_config config;
    config.transport = static_cast<kvm_transport>(7);
    microvm_sandbox sb(ctx.get_executor(), missing_kernel(), config);
    std::optional<error_code> ec;
    sb.async_start([&](error_code e) { ec = e; });
    ctx.run();
    BOOST_TEST((ec == sandbox_errc::unsupported_transport));
    BOOST_TEST((sb.state() == microvm_state::failed));
}

BOOST_AUTO_TEST_CASE(destroy_moves_to_destroyed_and_later_operations_are_invalid_state) {
    asio::io_context ctx;
    microvm_sandbox sb(ctx.get_executor(), missing_kernel());
    std::optional<error_code> destroyed, after;
    sb.async_destroy([&](error_code e) { destroyed = e; });
    ctx.run();
    BOOST_TEST(!*destroyed);
    BOOST_TEST((sb.state() == microvm_state::destroyed));
    sb.async_stat("/", [&](error_code e, guest_file_stat) { after = e; });
    ctx.restart();
    ctx.run();
    BOOST_TEST((after == lifecycle_errc::invalid_state));
}

BOOST_AUTO_TEST_CASE(an_exception_in_an_operation_becomes_its_own_error_not_out_of_memory) {
    using mimobox::vm::detail::error_from_exception;
    namespace errc = boost::system::errc;
    auto of = [](auto e) { return error_from_exception(std::make_exception_ptr(e)); };
    BOOST_TEST((of(boost::system::system_error(boost::asio::error::operation_aborted)) == boost::asio::error::operation_aborted));
    BOOST_TEST((of(std::bad_alloc()) == errc::not_enough_memory));
    BOOST_TEST((of(std::runtime_error("bug")) == mimobox::vm::sandbox_errc::internal_error));
    BOOST_TEST((of(std::runtime_error("bug")) != errc::not_enough_memory));
}
