#include "mimobox/vm/restore_pool.hpp"

#include "mimobox/vm/error.hpp"
#include "sandbox/sandbox_access.hpp"
#include "sandbox/sandbox_state.hpp"
#include "sandbox/sandbox_vm.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>


#include "pool/fd_limit.hpp"
#include "pool/waiter_queue.hpp"

#include <deque>
#include <mutex>

namespace mimobox::vm {

namespace detail {

namespace asio = boost::asio;
using boost::system::error_code;
using restore_handler = asio::any_completion_handler<void(error_code, pooled_restore_vm)>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Everything lives on `strand`; counters read by stats() are also under `stats_mutex`.
class restore_pool_state : public std::enable_shared_from_this<restore_pool_state> {
public:
    restore_pool_state(asio::any_io_executor executor, restore_pool_config config)
        : io_(executor), strand_(asio::make_strand(executor)), config_(std::move(config)) {}

    const restore_pool_config& config() const noexcept { return config_; }

    restore_pool_stats stats() const {
        std::lock_guard lock(stats_mutex_);
        return stats_;
    }

    bool config_ok() const {
        return config_.max_shells > 0 && config_.min_idle_shells <= config_.max_shells && config_.refill_concurrency > 0 &&
               config_.vcpu_count > 0 && config_.memory_mib > 0 && config_.vsock != vsock_link::com2_uart;
    }

    void start() {
        asio::post(strand_, [self = shared_from_this()] { self->refill(); });
    }

    void restore(microvm_snapshot snap, sandbox_config cfg, restore_handler h) {
        const auto id = waiters_.connect_cancellation(h, weak_from_this());
        asio::post(strand_, [self = shared_from_this(), id, snap = std::move(snap), cfg = std::move(cfg), h = std::move(h)]() mutable {
            if (!self->config_ok()) return self->waiters_.fail(std::move(h), restore_pool_errc::invalid_config);
            if (self->stopped_) return self->waiters_.fail(std::move(h), restore_pool_errc::stopped);
            if (!snap.valid()) return self->waiters_.fail(std::move(h), snapshot_errc::not_a_snapshot);
            if (snap.vcpu_count() != self->config_.vcpu_count || snap.memory_mib() != self->config_.memory_mib ||
                snap.vsock() != self->config_.vsock)
                return self->waiters_.fail(std::move(h), restore_pool_errc::shape_mismatch);
            // Always a deadline: at 0, a request no ready shell serves now fails with exhausted.
            const std::chrono::steady_clock::duration deadline = std::max<std::chrono::steady_clock::duration>(
                self->config_.acquire_timeout, std::chrono::nanoseconds(1));
            self->waiters_.push(id, request{std::move(snap), std::move(cfg)}, std::move(h), deadline, restore_pool_errc::exhausted,
                                self->weak_from_this());
            self->serve();
        });
    }

    void stop(asio::any_completion_handler<void(error_code)> h) {
        asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
            self->stop_now();
            if (self->creating_ == 0 && self->restoring_ == 0) return self->complete(std::move(h), error_code{});
            self->stop_waiters_.push_back(std::move(h));
        });
    }

    /// A pooled VM went: its capacity comes back.
    void released() {
        asio::post(strand_, [self = shared_from_this()] {
            --self->in_use_;
            self->update_stats();
            self->refill();
            self->serve();
        });
    }

    void stop_now() {
        if (stopped_) return;
        stopped_ = true;
        idle_.clear();  // each backend's destructor stops its shell
        waiters_.abort_all(asio::error::operation_aborted);
        update_stats();
    }

    void abort_waiter(std::uint64_t id, error_code ec) { waiters_.abort(id, ec); }

private:
    struct request {
        microvm_snapshot snapshot;
        sandbox_config config;
    };
    using waiter = waiter_queue<pooled_restore_vm, request>::waiter;

    template <class Handler>
    void complete(Handler h, error_code ec) {
        asio::post(strand_, asio::append(std::move(h), ec));
    }

    std::size_t alive() const noexcept { return idle_.size() + creating_ + in_use_; }

    // Makes shells until min_idle_shells are ready or on the way (more while requests wait),
    // within max_shells and refill_concurrency.
    void refill() {
        while (!stopped_ && creating_ < config_.refill_concurrency && alive() < config_.max_shells &&
               idle_.size() + creating_ < std::max(config_.min_idle_shells, waiters_.size())) {
            ++creating_;
            asio::co_spawn(strand_, make_shell(shared_from_this()), asio::detached);
        }
    }

    static asio::awaitable<void> make_shell(std::shared_ptr<restore_pool_state> self) {
        microvm_config shape;
        shape.vcpu_count = self->config_.vcpu_count;
        shape.memory_mib = self->config_.memory_mib;
        shape.vsock = self->config_.vsock;
        shape.vsock_cid = self->config_.vsock_cid;
        auto shell = std::make_unique<kvm_backend>(self->io_, shape);
        auto [ec] = co_await shell->async_prepare(use_tuple);
        co_await asio::post(self->strand_, asio::use_awaitable);  // back on the pool's strand
        --self->creating_;
        {
            std::lock_guard lock(self->stats_mutex_);
            ++(ec ? self->stats_.failed : self->stats_.created);
        }
        if (!ec && !self->stopped_) self->idle_.push_back(std::move(shell));
        shell.reset();
        self->after_work();
        if (ec && !self->stopped_) {
            // A host that cannot make shells would spin: fail the waiters instead.
            self->waiters_.abort_all(ec);
            co_return;
        }
        self->refill();
        self->serve();
    }

    // Gives ready shells to waiting requests, oldest first.
    void serve() {
        while (!stopped_ && !waiters_.empty() && !idle_.empty()) {
            auto w = waiters_.pop_front();
            auto shell = std::move(idle_.front());
            idle_.pop_front();
            ++in_use_;
            ++restoring_;
            asio::co_spawn(strand_, restore_into(shared_from_this(), std::move(shell), std::move(w)), asio::detached);
        }
        refill();
        update_stats();
    }

    static asio::awaitable<void> restore_into(std::shared_ptr<restore_pool_state> self, std::unique_ptr<kvm_backend> shell, waiter w) {
        const auto started = std::chrono::steady_clock::now();
        auto vm = std::make_unique<kvm_sandbox_vm>(std::move(*shell), std::move(w.request.snapshot));
        auto st = std::make_shared<sandbox_state>(std::move(vm), std::move(w.request.config), self->io_);
        auto sb = sandbox_access::make(st);
        auto [ec] = co_await sb.async_start(use_tuple);
        co_await asio::post(self->strand_, asio::use_awaitable);
        --self->restoring_;
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
        if (!ec && self->stopped_) ec = asio::error::operation_aborted;  // the stop came first: the VM goes
        {
            std::lock_guard lock(self->stats_mutex_);
            if (ec) {
                ++self->stats_.failed;
            } else {
                ++self->stats_.restored;
                std::size_t b = 0;
                while (b < restore_pool_stats::latency_bucket_ms.size() && ms >= restore_pool_stats::latency_bucket_ms[b]) ++b;
                ++self->stats_.restore_latency_ms[b];
            }
        }
        if (ec) {
            --self->in_use_;
            sb = microvm_sandbox();  // stops the VM
            self->waiters_.fail(std::move(w.handler), ec);
        } else {
            self->waiters_.succeed(std::move(w.handler), pooled_restore_vm(std::move(sb), self->weak_from_this()));
        }
        self->after_work();
        self->refill();
        self->serve();
    }

    // Completes a stop that waited for shells in the making and restores in flight.
    void after_work() {
        update_stats();
        if (stopped_ && creating_ == 0 && restoring_ == 0)
            for (auto& h : std::exchange(stop_waiters_, {})) complete(std::move(h), error_code{});
    }

    void update_stats() {
        std::lock_guard lock(stats_mutex_);
        stats_.idle_shells = idle_.size();
        stats_.in_use = in_use_;
    }

    asio::any_io_executor io_;
    asio::strand<asio::any_io_executor> strand_;
    const restore_pool_config config_;
    std::deque<std::unique_ptr<kvm_backend>> idle_;
    waiter_queue<pooled_restore_vm, request> waiters_{strand_};
    std::vector<asio::any_completion_handler<void(error_code)>> stop_waiters_;
    std::size_t creating_ = 0, restoring_ = 0, in_use_ = 0;
    bool stopped_ = false;
    mutable std::mutex stats_mutex_;
    restore_pool_stats stats_;
};

}  // namespace detail

// ---- pooled_restore_vm

pooled_restore_vm::pooled_restore_vm(microvm_sandbox sandbox, std::weak_ptr<detail::restore_pool_state> pool) noexcept
    : sandbox_(std::move(sandbox)), pool_(std::move(pool)), held_(true) {}

pooled_restore_vm::pooled_restore_vm(pooled_restore_vm&& other) noexcept
    : sandbox_(std::move(other.sandbox_)), pool_(std::move(other.pool_)), held_(std::exchange(other.held_, false)) {}

pooled_restore_vm& pooled_restore_vm::operator=(pooled_restore_vm&& other) noexcept {
    if (this != &other) {
        release();
        sandbox_ = std::move(other.sandbox_);
        pool_ = std::move(other.pool_);
        held_ = std::exchange(other.held_, false);
    }
    return *this;
}

void pooled_restore_vm::release() noexcept {
    if (!std::exchange(held_, false)) return;
    sandbox_ = microvm_sandbox();  // the sandbox's destructor stops the VM
    detail::return_capacity(pool_);
}

// ---- restore_pool

restore_pool::restore_pool(executor_type executor, restore_pool_config config)
    : state_(std::make_shared<detail::restore_pool_state>(std::move(executor), std::move(config))) {
    detail::raise_fd_limit();
    if (state_->config_ok()) state_->start();
}

restore_pool::~restore_pool() {
    // As async_stop, nobody waiting: on the pool's strand, since the pool's coroutines own
    // what it touches; they hold the state until they finish.
    try {
        state_->stop([](boost::system::error_code) {});
    } catch (...) {
        // Out of memory: the shells go when the last coroutine releases the state.
    }
}

const restore_pool_config& restore_pool::config() const noexcept { return state_->config(); }
restore_pool_stats restore_pool::stats() const { return state_->stats(); }

void restore_pool::initiate_restore(microvm_snapshot snapshot, sandbox_config config,
                                    boost::asio::any_completion_handler<void(error_code, pooled_restore_vm)> handler) {
    state_->restore(std::move(snapshot), std::move(config), std::move(handler));
}

void restore_pool::initiate_stop(boost::asio::any_completion_handler<void(error_code)> handler) { state_->stop(std::move(handler)); }

}  // namespace mimobox::vm
