#include "mimobox/vm/microvm_errc.hpp"

#define BOOST_TEST_MODULE microvm_errc
#include <boost/test/unit_test.hpp>

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
    for (int v = 1; v <= static_cast<int>(microvm_errc::invalid_vsock_link); ++v) {
        auto msg = make_error_code(static_cast<microvm_errc>(v)).message();
        BOOST_TEST(msg.find("unknown") == std::string::npos);
        BOOST_TEST(seen.insert(msg).second);
    }
}
