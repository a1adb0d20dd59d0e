#include "mimobox/vm/error.hpp"

#define BOOST_TEST_MODULE error
#include <boost/test/unit_test.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/errc.hpp>

#include <cerrno>
#include <set>
#include <string>

using namespace mimobox::vm;
namespace errc = boost::system::errc;
using boost::system::error_code;

namespace {
// Every code of every public domain, for the tests that must hold for all of them.
template <class Enum>
std::vector<error_code> all_codes(Enum last) {
    std::vector<error_code> out;
    for (int v = 1; v <= static_cast<int>(last); ++v) out.push_back(make_error_code(static_cast<Enum>(v)));
    return out;
}
std::vector<error_code> every_public_code() {
    std::vector<error_code> out;
    for (auto& v : {all_codes(microvm_errc::invalid_kick_signal), all_codes(lifecycle_errc::vm_stopped),
                    all_codes(asset_errc::asset_integrity), all_codes(sandbox_errc::internal_error),
                    all_codes(guest_file_errc::not_a_regular_file), all_codes(vsock_errc::link_broken),
                    all_codes(snapshot_errc::unsupported_vm), all_codes(restore_pool_errc::invalid_config)})
        out.insert(out.end(), v.begin(), v.end());
    return out;
}
std::size_t count_matching(condition c) {
    std::size_t n = 0;
    for (const auto& ec : every_public_code()) n += ec == c;
    return n;
}
}  // namespace

BOOST_AUTO_TEST_CASE(enum_converts_to_error_code_in_its_category) {
    boost::system::error_code ec = microvm_errc::unsupported_platform;
    BOOST_TEST(ec.category().name() == std::string("mimobox.microvm"));
    BOOST_TEST((ec == microvm_errc::unsupported_platform));
    BOOST_TEST((ec != microvm_errc::zero_vcpus));
}

BOOST_AUTO_TEST_CASE(every_code_has_its_own_message) {
    std::set<std::string> seen;
    for (int v = 1; v <= static_cast<int>(microvm_errc::invalid_kick_signal); ++v) {
        auto msg = make_error_code(static_cast<microvm_errc>(v)).message();
        BOOST_TEST(msg.find("unknown") == std::string::npos);
        BOOST_TEST(seen.insert(msg).second);
    }
}

BOOST_AUTO_TEST_CASE(new_sandbox_and_file_codes_have_messages_and_errno_mappings) {
    using mimobox::vm::guest_file_errc;
    using mimobox::vm::sandbox_errc;
    for (auto e : {sandbox_errc::agent_timeout})
        BOOST_TEST(make_error_code(e).message().find("unknown") == std::string::npos);
    for (auto e : {guest_file_errc::file_too_large, guest_file_errc::not_a_regular_file})
        BOOST_TEST(make_error_code(e).message().find("unknown") == std::string::npos);
    BOOST_TEST((mimobox::vm::guest_file_errc_from_errno(EFBIG) == guest_file_errc::file_too_large));
    BOOST_TEST((mimobox::vm::guest_file_errc_from_errno(ENXIO) == guest_file_errc::not_a_regular_file));
}

BOOST_AUTO_TEST_CASE(every_public_code_has_a_message_and_a_named_category) {
    for (const auto& ec : every_public_code()) {
        BOOST_TEST(ec.message().find("unknown") == std::string::npos, ec.category().name() << ":" << ec.value());
        BOOST_TEST(std::string(ec.category().name()).starts_with("mimobox."));
    }
    BOOST_TEST(make_error_code(static_cast<sandbox_errc>(999)).message() == "unknown mimobox.sandbox error");
}

BOOST_AUTO_TEST_CASE(vsock_errc_is_public_and_compares_as_a_connection_failure) {
    error_code ec = vsock_errc::connection_refused;
    BOOST_TEST(ec.category().name() == std::string("mimobox.vsock"));
    BOOST_TEST((ec == condition::connection_failed));
    BOOST_TEST(count_matching(condition::connection_failed) == 5u);
}

BOOST_AUTO_TEST_CASE(vm_stopped_matches_both_domains_that_report_it) {
    BOOST_TEST((error_code(lifecycle_errc::vm_stopped) == condition::vm_stopped));
    BOOST_TEST((error_code(sandbox_errc::vm_stopped) == condition::vm_stopped));
    BOOST_TEST((error_code(sandbox_errc::agent_disconnected) != condition::vm_stopped));
    BOOST_TEST(count_matching(condition::vm_stopped) == 2u);
}

BOOST_AUTO_TEST_CASE(timed_out_matches_host_deadlines_and_the_generic_code) {
    BOOST_TEST((error_code(sandbox_errc::ready_timeout) == condition::timed_out));
    BOOST_TEST((error_code(sandbox_errc::agent_timeout) == condition::timed_out));
    BOOST_TEST((errc::make_error_code(errc::timed_out) == condition::timed_out));
    BOOST_TEST((error_code(boost::asio::error::timed_out) == condition::timed_out));
    BOOST_TEST((error_code(boost::asio::error::operation_aborted) != condition::timed_out));
    BOOST_TEST((error_code(restore_pool_errc::exhausted) == condition::timed_out));
    BOOST_TEST(count_matching(condition::timed_out) == 3u);
}

BOOST_AUTO_TEST_CASE(not_found_matches_guest_paths_assets_and_images) {
    for (error_code ec : {error_code(guest_file_errc::not_found), error_code(asset_errc::assets_dir_not_found),
                          error_code(asset_errc::asset_missing), error_code(microvm_errc::kernel_not_found),
                          error_code(microvm_errc::initramfs_not_found),
                          errc::make_error_code(errc::no_such_file_or_directory)})
        BOOST_TEST((ec == condition::not_found), ec.message());
    BOOST_TEST((error_code(guest_file_errc::is_directory) != condition::not_found));
    BOOST_TEST(count_matching(condition::not_found) == 5u);
}

BOOST_AUTO_TEST_CASE(permission_denied_matches_the_guest_and_the_generic_code) {
    BOOST_TEST((error_code(guest_file_errc::permission_denied) == condition::permission_denied));
    BOOST_TEST((errc::make_error_code(errc::permission_denied) == condition::permission_denied));
    BOOST_TEST(count_matching(condition::permission_denied) == 1u);
}

BOOST_AUTO_TEST_CASE(invalid_state_matches_lifecycle_misuse_and_a_closed_stdin) {
    BOOST_TEST((error_code(lifecycle_errc::invalid_state) == condition::invalid_state));
    BOOST_TEST((error_code(sandbox_errc::stdin_closed) == condition::invalid_state));
    BOOST_TEST((error_code(restore_pool_errc::stopped) == condition::invalid_state));
    BOOST_TEST(count_matching(condition::invalid_state) == 3u);
}

BOOST_AUTO_TEST_CASE(invalid_config_matches_every_configuration_code) {
    for (auto e : {microvm_errc::zero_vcpus, microvm_errc::too_many_vcpus, microvm_errc::memory_too_small,
                   microvm_errc::memory_too_large, microvm_errc::cmdline_too_long, microvm_errc::cmdline_invalid,
                   microvm_errc::invalid_vsock_cid, microvm_errc::invalid_vsock_link, microvm_errc::invalid_kick_signal})
        BOOST_TEST((error_code(e) == condition::invalid_config), error_code(e).message());
    BOOST_TEST((error_code(sandbox_errc::unsupported_transport) == condition::invalid_config));
    BOOST_TEST((error_code(snapshot_errc::unsupported_vm) == condition::invalid_config));
    BOOST_TEST((error_code(restore_pool_errc::invalid_config) == condition::invalid_config));
    BOOST_TEST(count_matching(condition::invalid_config) == 12u);
}

BOOST_AUTO_TEST_CASE(bad_guest_image_matches_unbootable_and_unverified_images) {
    for (auto e : {microvm_errc::not_a_kernel, microvm_errc::truncated_kernel, microvm_errc::boot_protocol_too_old,
                   microvm_errc::unsupported_elf, microvm_errc::kernel_does_not_fit, microvm_errc::initramfs_does_not_fit})
        BOOST_TEST((error_code(e) == condition::bad_guest_image), error_code(e).message());
    for (auto e : {asset_errc::checksum_missing, asset_errc::checksum_malformed, asset_errc::asset_integrity})
        BOOST_TEST((error_code(e) == condition::bad_guest_image), error_code(e).message());
    BOOST_TEST(count_matching(condition::bad_guest_image) == 9u);
}

BOOST_AUTO_TEST_CASE(host_unsupported_matches_platform_problems) {
    for (auto e : {microvm_errc::unsupported_platform, microvm_errc::kvm_api_mismatch,
                   microvm_errc::missing_kvm_capability, microvm_errc::kick_signal_in_use})
        BOOST_TEST((error_code(e) == condition::host_unsupported), error_code(e).message());
    BOOST_TEST(count_matching(condition::host_unsupported) == 4u);
}

BOOST_AUTO_TEST_CASE(agent_failed_matches_an_agent_that_hung_up_or_misbehaved) {
    for (auto e : {sandbox_errc::agent_disconnected, sandbox_errc::agent_protocol, sandbox_errc::agent_error})
        BOOST_TEST((error_code(e) == condition::agent_failed), error_code(e).message());
    BOOST_TEST((error_code(sandbox_errc::agent_timeout) != condition::agent_failed));
    BOOST_TEST(count_matching(condition::agent_failed) == 3u);
}

BOOST_AUTO_TEST_CASE(conditions_have_messages_and_do_not_match_foreign_codes) {
    for (int c = 1; c <= static_cast<int>(condition::out_of_host_resources); ++c) {
        auto cond = make_error_condition(static_cast<condition>(c));
        BOOST_TEST(cond.message().find("unknown") == std::string::npos);
        BOOST_TEST((errc::make_error_code(errc::io_error) != cond));
        BOOST_TEST((error_code() != cond));
    }
}

BOOST_AUTO_TEST_CASE(out_of_host_resources_matches_descriptor_and_memory_exhaustion) {
    for (auto e : {errc::too_many_files_open, errc::too_many_files_open_in_system, errc::not_enough_memory})
        BOOST_TEST((errc::make_error_code(e) == condition::out_of_host_resources));
    BOOST_TEST((errc::make_error_code(errc::io_error) != condition::out_of_host_resources));
    BOOST_TEST(count_matching(condition::out_of_host_resources) == 0u);  // no code of ours means it
}

BOOST_AUTO_TEST_CASE(bad_snapshot_matches_every_snapshot_code) {
    // Every snapshot_errc but unsupported_vm (a VM, not a snapshot), and the pool's shape mismatch.
    BOOST_TEST(count_matching(condition::bad_snapshot) == 8u);
    BOOST_TEST((error_code(restore_pool_errc::shape_mismatch) == condition::bad_snapshot));
    BOOST_TEST((error_code(snapshot_errc::corrupt_memory) == condition::bad_snapshot));
    BOOST_TEST((error_code(snapshot_errc::corrupt_memory) != condition::not_found));
}
