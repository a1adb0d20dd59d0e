#include "mimobox/vm/vcpu_kick_signal.hpp"

#define BOOST_TEST_MODULE vcpu_kick_signal
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"
#include "vmm/vcpu_thread.hpp"

#include <csignal>

using namespace mimobox;

namespace {
void application_handler(int) {}
}  // namespace

// One process-wide setting: the cases run in order and build on each other.
BOOST_AUTO_TEST_CASE(the_kick_signal_is_a_real_time_signal_the_application_may_choose_before_the_first_vm) {
    BOOST_TEST(vm::vcpu_kick_signal() == SIGRTMIN + 3);
    BOOST_TEST((vm::set_vcpu_kick_signal(SIGUSR1) == vm::microvm_errc::invalid_kick_signal));
    BOOST_TEST((vm::set_vcpu_kick_signal(SIGRTMAX + 1) == vm::microvm_errc::invalid_kick_signal));
    BOOST_TEST(!vm::set_vcpu_kick_signal(SIGRTMIN + 5));
    BOOST_TEST(vm::vcpu_kick_signal() == SIGRTMIN + 5);
}

BOOST_AUTO_TEST_CASE(a_kick_signal_the_application_handles_itself_is_refused_not_taken_over) {
    struct sigaction sa {};
    sa.sa_handler = &application_handler;
    sigemptyset(&sa.sa_mask);
    BOOST_REQUIRE(::sigaction(SIGRTMIN + 5, &sa, nullptr) == 0);
    BOOST_TEST((vmm::vcpu_thread::install_kick_signal() == vm::microvm_errc::kick_signal_in_use));
    struct sigaction now {};
    ::sigaction(SIGRTMIN + 5, nullptr, &now);
    BOOST_TEST((now.sa_handler == &application_handler));  // still the application's
}

BOOST_AUTO_TEST_CASE(once_installed_the_kick_signal_is_fixed_and_installing_again_is_harmless) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    BOOST_REQUIRE(::sigaction(SIGRTMIN + 5, &dfl, nullptr) == 0);
    BOOST_TEST(!vmm::vcpu_thread::install_kick_signal());
    BOOST_TEST(!vmm::vcpu_thread::install_kick_signal());
    struct sigaction now {};
    ::sigaction(SIGRTMIN + 5, nullptr, &now);
    BOOST_TEST((now.sa_flags & SA_RESTART) == 0);  // KVM_RUN must return EINTR
    BOOST_TEST((vm::set_vcpu_kick_signal(SIGRTMIN + 6) == vm::microvm_errc::invalid_kick_signal));
    BOOST_TEST(vm::vcpu_kick_signal() == SIGRTMIN + 5);
}
