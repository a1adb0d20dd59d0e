#include "mimobox/vm/microvm_errc.hpp"

#define BOOST_TEST_MODULE microvm_errc
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/guest_file_errc.hpp"
#include "mimobox/vm/sandbox_errc.hpp"

#include <cerrno>
#include <set>
#include <string>

using mimobox::vm::microvm_errc;

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
