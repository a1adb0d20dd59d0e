#include "vmm/vcpu_thread.hpp"

#include "mimobox/vm/error.hpp"
#include "mimobox/vm/vcpu_kick_signal.hpp"

#include <boost/asio/post.hpp>

#include <atomic>
#include <csignal>
#include <mutex>
#include <pthread.h>

namespace mimobox::vmm {

namespace {
std::atomic<int> chosen_signal{0};  // 0: the default, SIGRTMIN + 3 (not a constant expression)
std::atomic<bool> signal_fixed{false};
void kick_handler(int) {}

int current_signal() noexcept {
    const int s = chosen_signal.load();
    // SIGRTMIN + 3: clear of glibc's internal ones (below SIGRTMIN) and of the first few that
    // applications commonly take.
    return s != 0 ? s : SIGRTMIN + 3;
}
}  // namespace

boost::system::error_code vcpu_thread::install_kick_signal() noexcept {
    static std::mutex install;
    std::lock_guard lock(install);
    signal_fixed = true;
    const int sig = current_signal();
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) return {errno, boost::system::system_category()};
    const bool ours = !(old.sa_flags & SA_SIGINFO) && old.sa_handler == &kick_handler;
    if (ours) return {};
    // SIG_DFL (which would kill the process) and SIG_IGN (which would not interrupt KVM_RUN)
    // are replaced; a handler of the application's is not ours to take.
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
        return vm::microvm_errc::kick_signal_in_use;
    struct sigaction sa {};
    sa.sa_handler = &kick_handler;  // no SA_RESTART: KVM_RUN returns EINTR
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, nullptr) != 0) return {errno, boost::system::system_category()};
    return {};
}

void vcpu_thread::start() {
    if (thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        quit_ = false;
    }
    signal_ = current_signal();  // machine::build installed its handler
    thread_ = std::thread([this] { loop(); });
}

void vcpu_thread::stop_and_join() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        quit_ = true;
    }
    kick();
    go_.release();
    thread_.join();
    while (go_.try_acquire()) {
    }
    std::lock_guard lock(mutex_);
    pending_.reset();
    executor_ = {};
}

void vcpu_thread::kick() {
    // The kernel reads immediate_exit on entry to KVM_RUN; the signal covers a thread already inside.
    std::atomic_ref<std::uint8_t>(cpu_.run_state().immediate_exit).store(1, std::memory_order_release);
    if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), signal_);
}

void vcpu_thread::initiate_run(boost::asio::any_io_executor executor,
                               boost::asio::any_completion_handler<void(vcpu_exit)> handler) {
    {
        std::lock_guard lock(mutex_);
        pending_.emplace(std::move(handler));
        executor_ = std::move(executor);
    }
    go_.release();
}

void vcpu_thread::loop() {
    // The thread inherits its creator's mask; a blocked kick would leave a guest that spins
    // without exits impossible to pause or stop.
    sigset_t kick_only;
    sigemptyset(&kick_only);
    sigaddset(&kick_only, signal_);
    ::pthread_sigmask(SIG_UNBLOCK, &kick_only, nullptr);
    for (;;) {
        go_.acquire();
        {
            std::lock_guard lock(mutex_);
            if (quit_) return;
        }
        auto exit = decode_exit(cpu_.run(), cpu_.run_state(), run_size_);
        // A kick is never served here (it is not an MMIO exit), so stopping and pausing still
        // reach the strand: immediate_exit makes the next KVM_RUN return at once.
        while (fast_path_ && fast_path_(exit)) exit = decode_exit(cpu_.run(), cpu_.run_state(), run_size_);
        std::lock_guard lock(mutex_);
        if (quit_) return;
        boost::asio::post(executor_, [h = std::move(*pending_), e = std::move(exit)]() mutable { std::move(h)(std::move(e)); });
        pending_.reset();
    }
}

}  // namespace mimobox::vmm

namespace mimobox::vm {

boost::system::error_code set_vcpu_kick_signal(int signal_number) noexcept {
    if (signal_number < SIGRTMIN || signal_number > SIGRTMAX || vmm::signal_fixed.load()) return microvm_errc::invalid_kick_signal;
    vmm::chosen_signal = signal_number;
    return {};
}

int vcpu_kick_signal() noexcept { return vmm::current_signal(); }

}  // namespace mimobox::vm
