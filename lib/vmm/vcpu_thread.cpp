#include "vmm/vcpu_thread.hpp"

#include <boost/asio/post.hpp>

#include <atomic>
#include <csignal>
#include <mutex>
#include <pthread.h>

namespace mimobox::vmm {

int vcpu_thread::kick_signal() noexcept {
    static const int signal = [] {
        // SIGRTMIN + 3: clear of glibc's internal ones (SIGRTMIN-2..) and of the first few that
        // applications commonly take. No SA_RESTART, so KVM_RUN returns EINTR.
        int sig = SIGRTMIN + 3;
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sigemptyset(&sa.sa_mask);
        ::sigaction(sig, &sa, nullptr);
        return sig;
    }();
    return signal;
}

void vcpu_thread::start() {
    if (thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        quit_ = false;
    }
    (void)kick_signal();
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
    if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
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
