// A sandbox_vm without a VM, for unit tests of the sandbox layer: each vsock connection is a
// socket pair whose far end is served by the real guest agent code (guest/agent/session.cpp)
// on a thread of the test process. Commands run on the test host, files are the test host's:
// tests use paths under a temporary directory. The agent's init request changes nothing here:
// hostname and entropy are recorded instead.
//
// Fault injection: refuse the next connects, or replace the agent with a scripted peer.
#pragma once

#include "sandbox/sandbox_access.hpp"
#include "sandbox/sandbox_state.hpp"
#include "sandbox/sandbox_vm.hpp"
#include "api/vsock_channel.hpp"
#include "mimobox/vm/error.hpp"
#include "session.hpp"  // guest/agent

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mimobox::test {

namespace asio = boost::asio;
using boost::system::error_code;

/// A vsock_stream's connection over a Unix stream socket, with vsock's error codes.
class socket_vsock_channel final : public vm::detail::vsock_channel {
public:
    socket_vsock_channel(asio::any_io_executor strand, int fd, std::uint32_t guest_port)
        : strand_(strand), socket_(strand), guest_port_(guest_port) {
        socket_.assign(asio::local::stream_protocol(), fd);
    }

    asio::any_io_executor executor() const override { return strand_; }
    bool is_open() const override { return socket_.is_open(); }
    std::uint32_t host_port() const override { return 1024; }
    std::uint32_t guest_port() const override { return guest_port_; }
    // The handler keeps its cancellation slot and executor; socket errors become vsock's.
    auto wrap(io_handler handler) const {
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto ex = asio::get_associated_executor(handler, strand_);
        return asio::bind_cancellation_slot(slot, asio::bind_executor(ex, [h = std::move(handler)](error_code ec, std::size_t n) mutable {
            if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) ec = vm::vsock_errc::connection_reset;
            std::move(h)(ec, n);
        }));
    }

    void read(std::vector<asio::mutable_buffer> buffers, io_handler handler) override {
        socket_.async_read_some(buffers, wrap(std::move(handler)));
    }
    void write(std::vector<asio::const_buffer> buffers, io_handler handler) override {
        socket_.async_write_some(buffers, wrap(std::move(handler)));
    }
    void shutdown_write() override {
        error_code ignored;
        socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    }
    void close() override {
        error_code ignored;
        socket_.shutdown(asio::socket_base::shutdown_both, ignored);
        socket_.close(ignored);
    }

private:
    asio::any_io_executor strand_;
    asio::local::stream_protocol::socket socket_;
    std::uint32_t guest_port_;
};

class in_process_vm final : public vm::detail::sandbox_vm {
public:
    explicit in_process_vm(asio::io_context& ctx) : strand_(asio::make_strand(ctx)) {
        // The agent writes to connections the host may have closed; in the guest, PID 1 ignores
        // SIGPIPE for it (guest/agent/main.cpp). Here the test process must.
        ::signal(SIGPIPE, SIG_IGN);
        system_.seed_rng = [this](const std::string& entropy) {
            std::lock_guard lock(mutex_);
            entropy_bytes_ = entropy.size();
            return 0;
        };
        system_.set_hostname = [this](const std::string& name) {
            std::lock_guard lock(mutex_);
            hostname_ = name;
            return 0;
        };
        system_.reseed_rng = [this] {
            std::lock_guard lock(mutex_);
            ++reseeds_;
            return 0;
        };
        system_.set_wall_clock = [this](std::int64_t ns) {
            std::lock_guard lock(mutex_);
            wall_clock_ns_ = ns;
            return 0;
        };
        agent = [this](int fd) { agent::guest::serve_connection(fd, system_); };
    }
    ~in_process_vm() override {
        *alive_ = false;
        close_all();
        join_all();
    }

    /// Serves each connection's far end (the socket is closed after it returns). Default: the
    /// real agent. Set before the connection is made.
    std::function<void(int fd)> agent;
    /// Pauses and resumes done (sandbox_config::idle_pause_after).
    std::atomic<int> pauses{0}, resumes{0};
    /// Resumes fail (lifecycle_errc::invalid_state) while set.
    std::atomic<bool> refuse_resume{false};
    /// Connections to refuse (vsock_errc::connection_refused) before the next is accepted.
    std::atomic<int> refuse_connects{0};
    std::atomic<int> connections{0};

    std::string hostname() const {
        std::lock_guard lock(mutex_);
        return hostname_;
    }
    int reseeds() const {
        std::lock_guard lock(mutex_);
        return reseeds_;
    }
    std::int64_t wall_clock_ns() const {
        std::lock_guard lock(mutex_);
        return wall_clock_ns_;
    }
    std::size_t entropy_bytes() const {
        std::lock_guard lock(mutex_);
        return entropy_bytes_;
    }
    /// Waits for every agent thread to finish (their connections must be closed).
    void join_all() {
        std::vector<std::thread> threads;
        {
            std::lock_guard lock(mutex_);
            threads.swap(threads_);
        }
        for (auto& t : threads) t.join();
    }

    asio::any_io_executor get_executor() const override { return strand_; }
    vm::kvm_lifecycle state() const override { return state_.load(); }

protected:
    void boot(handler<> h) override {
        auto ec = state_.load() == vm::kvm_lifecycle::created ? error_code{} : error_code(vm::lifecycle_errc::invalid_state);
        if (!ec) state_ = vm::kvm_lifecycle::running;
        asio::post(strand_, asio::append(std::move(h), ec));
    }
    void stop(handler<> h) override {
        asio::post(strand_, [this, alive = alive_, h = std::move(h)]() mutable {
            if (!*alive) return;  // the sandbox that owned us went before this ran
            state_ = vm::kvm_lifecycle::stopped;
            close_all();
            for (auto& w : stop_waiters_) asio::post(strand_, asio::append(std::move(w), error_code{}, vm::vm_stop_info{}));
            stop_waiters_.clear();
            std::move(h)(error_code{});
        });
    }
    void wait_stopped(handler<vm::vm_stop_info> h) override {
        asio::post(strand_, [this, alive = alive_, h = std::move(h)]() mutable {
            if (!*alive) return;  // the sandbox that owned us went before this ran
            if (state_.load() == vm::kvm_lifecycle::stopped) return std::move(h)(error_code{}, vm::vm_stop_info{});
            stop_waiters_.push_back(std::move(h));
        });
    }
    // Like kvm_backend: pausing a running VM, resuming a paused one; connections are refused
    // while paused (so an operation that forgot to resume fails).
    void pause(handler<> h) override {
        asio::post(strand_, [this, alive = alive_, h = std::move(h)]() mutable {
            if (!*alive) return;  // the sandbox that owned us went before this ran
            auto expected = vm::kvm_lifecycle::running;
            const bool ok = state_.compare_exchange_strong(expected, vm::kvm_lifecycle::paused);
            if (ok) ++pauses;
            std::move(h)(ok ? error_code{} : error_code(vm::lifecycle_errc::invalid_state));
        });
    }
    void resume(handler<> h) override {
        asio::post(strand_, [this, alive = alive_, h = std::move(h)]() mutable {
            if (!*alive) return;  // the sandbox that owned us went before this ran
            auto expected = vm::kvm_lifecycle::paused;
            const bool ok = !refuse_resume.load() && state_.compare_exchange_strong(expected, vm::kvm_lifecycle::running);
            if (ok) ++resumes;
            std::move(h)(ok ? error_code{} : error_code(vm::lifecycle_errc::invalid_state));
        });
    }
    void vsock_connect(std::uint32_t guest_port, handler<vm::vsock_stream> h) override {
        asio::post(strand_, [this, alive = alive_, guest_port, h = std::move(h)]() mutable {
            if (!*alive) return;  // the sandbox that owned us went before this ran
            if (state_.load() != vm::kvm_lifecycle::running)
                return std::move(h)(error_code(vm::lifecycle_errc::invalid_state), vm::vsock_stream());
            if (refuse_connects.load() > 0) {
                --refuse_connects;
                return std::move(h)(error_code(vm::vsock_errc::connection_refused), vm::vsock_stream());
            }
            int fds[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
                return std::move(h)(error_code(errno, boost::system::system_category()), vm::vsock_stream());
            ++connections;
            {
                std::lock_guard lock(mutex_);
                threads_.emplace_back([serve = agent, fd = fds[1]] {
                    serve(fd);
                    ::close(fd);
                });
            }
            auto channel = std::make_shared<socket_vsock_channel>(strand_, fds[0], guest_port);
            channels_.push_back(channel);
            std::move(h)(error_code{}, vm::vsock_stream(std::move(channel)));
        });
    }

private:
    void close_all() {
        for (auto& weak : channels_)
            if (auto c = weak.lock()) c->close();
        channels_.clear();
    }

    asio::any_io_executor strand_;
    // Work posted to the strand checks it: a sandbox (and so this VM) may be destroyed right
    // after asking for a stop, as kvm_backend allows.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::atomic<vm::kvm_lifecycle> state_{vm::kvm_lifecycle::created};
    agent::guest::guest_system system_;
    mutable std::mutex mutex_;
    std::string hostname_;
    std::size_t entropy_bytes_ = 0;
    int reseeds_ = 0;
    std::int64_t wall_clock_ns_ = 0;
    std::vector<std::thread> threads_;
    std::vector<std::weak_ptr<socket_vsock_channel>> channels_;  // strand only
    std::vector<handler<vm::vm_stop_info>> stop_waiters_;        // strand only
};

/// A sandbox (state `created`) on an in_process_vm; `vm` receives the VM for fault injection.
inline vm::microvm_sandbox make_in_process_sandbox(asio::io_context& ctx, vm::sandbox_config config, in_process_vm*& vm) {
    auto owned = std::make_unique<in_process_vm>(ctx);
    vm = owned.get();
    auto st = std::make_shared<vm::detail::sandbox_state>(std::move(owned), std::move(config));
    return vm::detail::sandbox_access::make(std::move(st));
}

}  // namespace mimobox::test
