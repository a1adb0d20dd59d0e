// restore_pool without KVM: what it refuses before touching a VM (a bad config, a snapshot of
// another shape, an empty snapshot), a host where shells cannot be made (the waiters fail with
// the platform's error instead of the pool spinning), cancellation while waiting, and stop.
#include "mimobox/vm/restore_pool.hpp"

#define BOOST_TEST_MODULE restore_pool
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "snapshot/snapshot_data.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace mimobox;
using boost::system::error_code;
namespace asio = boost::asio;

namespace {

// A snapshot of the given shape whose state was never a VM's: enough for the pool's checks.
vm::microvm_snapshot fake_snapshot(std::uint32_t vcpus, std::uint32_t memory_mib) {
    snapshot::machine_state ms;
    ms.vcpu_count = vcpus;
    ms.memory_bytes = std::uint64_t(memory_mib) << 20;
    ms.vsock_link = static_cast<std::uint8_t>(vm::vsock_link::virtio_pci);
    ms.vcpus.resize(vcpus);
    snapshot::state_blob blob;
    blob.metadata.vcpu_count = vcpus;
    blob.metadata.memory_bytes = ms.memory_bytes;
    blob.body = snapshot::encode_machine_state(ms);
    kvm::unique_fd fd(::memfd_create("fake-snapshot", MFD_CLOEXEC));
    BOOST_REQUIRE(fd && ::ftruncate(fd.get(), static_cast<off_t>(ms.memory_bytes)) == 0);
    auto data = vm::detail::make_snapshot_data(std::move(blob), std::move(fd), false);
    BOOST_REQUIRE_MESSAGE(data.has_value(), data.error().message());
    return vm::microvm_snapshot(std::move(*data));
}

vm::restore_pool_config shape(std::size_t min_idle = 1) {
    vm::restore_pool_config c;
    c.vcpu_count = 1;
    c.memory_mib = 64;
    c.min_idle_shells = min_idle;
    c.max_shells = 2;
    c.acquire_timeout = std::chrono::milliseconds(300);
    return c;
}

error_code restore_once(asio::io_context& ctx, vm::restore_pool& pool, vm::microvm_snapshot snap) {
    std::optional<error_code> result;
    pool.async_restore(std::move(snap), vm::sandbox_config(), [&](error_code ec, vm::pooled_restore_vm v) {
        result = ec;
        BOOST_TEST(!v.valid());
    });
    ctx.restart();
    ctx.run_for(std::chrono::seconds(10));
    BOOST_REQUIRE(result.has_value());
    return *result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(configs_that_cannot_work_are_refused) {
    asio::io_context ctx;
    auto bad = shape();
    bad.min_idle_shells = 3;  // above max_shells
    vm::restore_pool pool(ctx.get_executor(), bad);
    BOOST_TEST((restore_once(ctx, pool, fake_snapshot(1, 64)) == vm::restore_pool_errc::invalid_config));
    auto serial = shape();
    serial.vsock = vm::vsock_link::com2_uart;
    vm::restore_pool serial_pool(ctx.get_executor(), serial);
    BOOST_TEST((restore_once(ctx, serial_pool, fake_snapshot(1, 64)) == vm::condition::invalid_config));
}

BOOST_AUTO_TEST_CASE(a_pool_raises_the_descriptor_limit_to_the_hard_limit) {
    rlimit limit{};
    BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    if (limit.rlim_max > 256) {
        rlimit lowered = limit;
        lowered.rlim_cur = 256;
        BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    }
    asio::io_context ctx;
    vm::restore_pool pool(ctx.get_executor(), shape(0));
    rlimit now{};
    BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
    BOOST_TEST(now.rlim_cur == limit.rlim_max);
}

BOOST_AUTO_TEST_CASE(snapshots_of_another_shape_or_none_are_refused) {
    asio::io_context ctx;
    vm::restore_pool pool(ctx.get_executor(), shape(0));
    BOOST_TEST((restore_once(ctx, pool, fake_snapshot(2, 64)) == vm::restore_pool_errc::shape_mismatch));
    BOOST_TEST((restore_once(ctx, pool, fake_snapshot(1, 128)) == vm::restore_pool_errc::shape_mismatch));
    BOOST_TEST((restore_once(ctx, pool, vm::microvm_snapshot()) == vm::snapshot_errc::not_a_snapshot));
    BOOST_TEST(pool.stats().created == 0u);
}

BOOST_AUTO_TEST_CASE(a_host_that_cannot_make_shells_fails_the_waiters_with_its_error) {
    asio::io_context ctx;
    vm::restore_pool pool(ctx.get_executor(), shape());
    const auto ec = restore_once(ctx, pool, fake_snapshot(1, 64));
    // No KVM here: the shell's platform error, not a timeout and not a hang.
    BOOST_TEST((ec == vm::condition::host_unsupported), ec.message());
    BOOST_TEST(pool.stats().failed >= 1u);
    BOOST_TEST(pool.stats().idle_shells == 0u);
}

BOOST_AUTO_TEST_CASE(a_waiting_restore_is_cancelled_and_a_stopped_pool_refuses) {
    asio::io_context ctx;
    auto no_refill = shape(0);
    no_refill.refill_concurrency = 1;
    no_refill.max_shells = 1;
    vm::restore_pool pool(ctx.get_executor(), no_refill);
    asio::cancellation_signal cancel;
    std::optional<error_code> result;
    pool.async_restore(fake_snapshot(1, 64), vm::sandbox_config(),
                       asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, vm::pooled_restore_vm) { result = ec; }));
    cancel.emit(asio::cancellation_type::terminal);
    ctx.run_for(std::chrono::seconds(5));
    BOOST_REQUIRE(result.has_value());
    // Cancelled while it waited, or failed by the shell it was waiting for: never a VM.
    BOOST_TEST((*result == asio::error::operation_aborted || *result == vm::condition::host_unsupported), result->message());
    std::optional<error_code> stopped;
    pool.async_stop([&](error_code ec) { stopped = ec; });
    ctx.restart();
    ctx.run_for(std::chrono::seconds(5));
    BOOST_REQUIRE(stopped.has_value());
    BOOST_TEST(!*stopped);
    BOOST_TEST((restore_once(ctx, pool, fake_snapshot(1, 64)) == vm::restore_pool_errc::stopped));
}
