// The thread a running vCPU needs: it sits in KVM_RUN, decodes the exit and hands it to the
// exit loop coroutine on the VM's strand, then waits to be told to run again. While the strand
// handles an exit the thread is parked, so the strand may read and fill kvm_run's I/O data.
// An optional fast path serves the few exits that need no strand (lock-free device registers)
// on the thread itself and re-enters the guest at once.
#pragma once

#include "kvm/vcpu.hpp"
#include "vmm/vcpu_exit.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <functional>
#include <mutex>
#include <optional>
#include <semaphore>
#include <thread>

namespace mimobox::vmm {

class vcpu_thread {
public:
    explicit vcpu_thread(kvm::vcpu& cpu, std::size_t run_size) : cpu_(cpu), run_size_(run_size) {}
    vcpu_thread(const vcpu_thread&) = delete;
    vcpu_thread& operator=(const vcpu_thread&) = delete;
    ~vcpu_thread() { stop_and_join(); }

    /// Exits `serve` returns true for are complete: the thread re-enters KVM_RUN without
    /// the strand. It runs on this thread, concurrently with the strand, so it may only touch
    /// what is safe there. Set before start().
    using fast_path = std::function<bool(vcpu_exit&)>;
    void set_fast_path(fast_path serve) { fast_path_ = std::move(serve); }

    void start();
    /// Ends the thread (kicking it out of KVM_RUN if needed) and joins it. A pending async_run
    /// handler is destroyed without being called: the exit loop that owns it is being torn down.
    void stop_and_join();
    /// Makes the current or next KVM_RUN return EINTR: immediate_exit plus a signal to the thread.
    void kick();
    bool running() const noexcept { return thread_.joinable(); }

    /// Runs the vCPU once on the thread; completes on `executor` with the decoded exit.
    template <boost::asio::completion_token_for<void(vcpu_exit)> Token>
    auto async_run(boost::asio::any_io_executor executor, Token&& token) {
        return boost::asio::async_initiate<Token, void(vcpu_exit)>(
            [this, executor](auto handler) { initiate_run(executor, std::move(handler)); }, token);
    }

    /// Installs the kick signal's handler once per process (see vcpu_kick_signal.hpp);
    /// kick_signal_in_use if the application handles that signal itself.
    static boost::system::error_code install_kick_signal() noexcept;

private:
    void initiate_run(boost::asio::any_io_executor executor, boost::asio::any_completion_handler<void(vcpu_exit)> h);
    void loop();

    int signal_ = 0;  // the kick signal, fixed at start()
    kvm::vcpu& cpu_;
    std::size_t run_size_;
    std::thread thread_;
    std::counting_semaphore<> go_{0};
    std::mutex mutex_;  // guards quit_, pending_ and executor_ between the thread and its owner
    bool quit_ = false;
    // optional + emplace/reset: Boost 1.81's any_completion_handler move assignment recurses
    // until the stack overflows (it re-wraps the handler); construction and destruction are fine.
    std::optional<boost::asio::any_completion_handler<void(vcpu_exit)>> pending_;
    boost::asio::any_io_executor executor_;
    fast_path fast_path_;  // written before start(), then only read by the thread
};

}  // namespace mimobox::vmm
