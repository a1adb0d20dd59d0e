#include "mimobox/vm/vm_pool.hpp"

#include "mimobox/vm/error.hpp"
#include "pool/fd_limit.hpp"
#include "pool/vm_source.hpp"
#include "pool/waiter_queue.hpp"
#include "sandbox/sandbox_access.hpp"
#include "sandbox/sandbox_state.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>

namespace mimobox::vm {

namespace detail {

namespace asio = boost::asio;
using boost::system::error_code;
using acquire_handler = asio::any_completion_handler<void(error_code, pooled_vm)>;
using clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

class boot_source final : public vm_source {
public:
    boot_source(asio::any_io_executor io, microvm_config boot, sandbox_config sandbox)
        : io_(std::move(io)), boot_(std::move(boot)), sandbox_(std::move(sandbox)) {}
    asio::awaitable<std::tuple<error_code, std::unique_ptr<pooled_vm::holder>>> make() override {
        auto [ec, sb] = co_await microvm_sandbox::async_create(io_, boot_, sandbox_, use_tuple);
        if (ec) co_return std::tuple{ec, std::unique_ptr<pooled_vm::holder>()};
        auto h = std::make_unique<pooled_vm::holder>();
        h->booted = std::move(sb);
        co_return std::tuple{error_code{}, std::move(h)};
    }

private:
    asio::any_io_executor io_;
    microvm_config boot_;
    sandbox_config sandbox_;
};

restore_pool_config shells_for(const microvm_snapshot& snap, const vm_pool_config& config) {
    restore_pool_config c;
    c.vcpu_count = snap.vcpu_count();
    c.memory_mib = snap.memory_mib();
    c.vsock = snap.vsock();
    c.vsock_cid = config.boot.vsock_cid;
    // Shells for the restores the vm_pool runs at once; its own max_size bounds the rest.
    c.min_idle_shells = std::min(config.refill_concurrency, config.max_size);
    c.max_shells = config.max_size + c.min_idle_shells;
    c.refill_concurrency = std::max<std::size_t>(1, config.refill_concurrency);
    return c;
}

class snapshot_source final : public vm_source {
public:
    snapshot_source(asio::any_io_executor io, microvm_snapshot snap, const vm_pool_config& config)
        : shells_(std::move(io), shells_for(snap, config)), snapshot_(std::move(snap)), sandbox_(config.sandbox) {}
    asio::awaitable<std::tuple<error_code, std::unique_ptr<pooled_vm::holder>>> make() override {
        auto [ec, vm] = co_await shells_.async_restore(snapshot_, sandbox_, use_tuple);
        if (ec) co_return std::tuple{ec, std::unique_ptr<pooled_vm::holder>()};
        auto h = std::make_unique<pooled_vm::holder>();
        h->restored = std::move(vm);
        co_return std::tuple{error_code{}, std::move(h)};
    }
    void stop() noexcept override {
        try {
            shells_.async_stop(asio::detached);
        } catch (...) {
            // Out of memory posting: the restore_pool's destructor stops it.
        }
    }

private:
    restore_pool shells_;
    microvm_snapshot snapshot_;
    sandbox_config sandbox_;
};

}  // namespace

std::unique_ptr<vm_source> make_vm_source(asio::any_io_executor io, const vm_pool_config& config) {
    if (config.snapshot && config.snapshot->valid()) return std::make_unique<snapshot_source>(std::move(io), *config.snapshot, config);
    return std::make_unique<boot_source>(std::move(io), config.boot, config.sandbox);
}

// Everything lives on `strand_`; counters read by stats() are also under `stats_mutex_`.
class vm_pool_state : public std::enable_shared_from_this<vm_pool_state> {
public:
    vm_pool_state(asio::any_io_executor executor, vm_pool_config config, std::unique_ptr<vm_source> source)
        : strand_(asio::make_strand(executor)), config_(std::move(config)), source_(std::move(source)), maintenance_(strand_) {}

    const vm_pool_config& config() const noexcept { return config_; }
    bool running_in_this_thread() const noexcept { return strand_.running_in_this_thread(); }

    vm_pool_stats stats() const {
        std::lock_guard lock(stats_mutex_);
        return stats_;
    }

    bool config_ok() const {
        return config_.max_size > 0 && config_.min_idle <= config_.max_size && config_.refill_concurrency > 0 &&
               config_.max_consecutive_failures > 0 && (!config_.snapshot || config_.snapshot->valid());
    }

    void start() {
        asio::post(strand_, [self = shared_from_this()] {
            self->refill();
            asio::co_spawn(self->strand_, maintain(self), asio::detached);
        });
    }

    void acquire(acquire_handler h) {
        const auto id = waiters_.connect_cancellation(h, weak_from_this());
        asio::post(strand_, [self = shared_from_this(), id, h = std::move(h)]() mutable {
            if (!self->config_ok()) return self->waiters_.fail(std::move(h), pool_errc::invalid_config);
            if (self->stopped_) return self->waiters_.fail(std::move(h), pool_errc::stopped);
            self->unhealthy_ = false;  // someone asks again: try starting sandboxes again
            if (self->idle_.empty() && self->config_.acquire_timeout.count() <= 0 && self->alive() >= self->config_.max_size)
                return self->waiters_.fail(std::move(h), pool_errc::exhausted);
            self->waiters_.push(id, request{clock::now(), !self->idle_.empty()}, std::move(h), self->config_.acquire_timeout,
                                pool_errc::acquire_timeout, self->weak_from_this());
            self->serve();
            self->refill();
        });
    }

    void stop(asio::any_completion_handler<void(error_code)> h) {
        asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
            self->stop_now();
            if (self->busy() == 0) return self->complete(std::move(h), error_code{});
            self->stop_waiters_.push_back(std::move(h));
        });
    }

    /// A handed-out sandbox went: its capacity comes back.
    void released() {
        asio::post(strand_, [self = shared_from_this()] {
            --self->in_use_;
            self->update_stats();
            self->refill();
        });
    }

    void stop_now() noexcept {
        if (stopped_) return;
        stopped_ = true;
        maintenance_.cancel();
        idle_.clear();  // each sandbox's destructor stops its VM
        waiters_.abort_all(pool_errc::stopped);
        source_->stop();
        update_stats();
    }

    void abort_waiter(std::uint64_t id, error_code ec) { waiters_.abort(id, ec); }

private:
    struct request {
        clock::time_point since;
        bool idle_at_request;  // a sandbox was idle when it asked: a hit
    };
    struct idle_vm {
        std::unique_ptr<pooled_vm::holder> held;
        clock::time_point since;
        bool paused = false;
    };

    template <class Handler>
    void complete(Handler h, error_code ec) {
        asio::post(strand_, asio::append(std::move(h), ec));
    }

    std::size_t alive() const noexcept { return idle_.size() + starting_ + checking_ + in_use_; }
    std::size_t busy() const noexcept { return starting_ + checking_ + pausing_; }

    // Starts sandboxes until min_idle are idle or on the way (more while acquisitions wait),
    // within max_size and refill_concurrency; not while the source is failing, nor while a
    // pause is under way. With pause_idle, in batches: a batch starts only when the last one
    // has finished and its sandboxes are paused (see pause_idle).
    void refill() {
        if (config_.pause_idle && starting_ > 0) return update_stats();
        while (!stopped_ && !unhealthy_ && pausing_ == 0 && starting_ < config_.refill_concurrency && alive() < config_.max_size &&
               idle_.size() + starting_ < std::max(config_.min_idle, waiters_.size())) {
            ++starting_;
            asio::co_spawn(strand_, start_one(shared_from_this()), asio::detached);
        }
        update_stats();
    }

    static asio::awaitable<void> start_one(std::shared_ptr<vm_pool_state> self) {
        auto [ec, held] = co_await self->source_->make();
        co_await asio::post(self->strand_, asio::use_awaitable);  // back on the pool's strand
        --self->starting_;
        {
            std::lock_guard lock(self->stats_mutex_);
            ++(ec ? self->stats_.failures : self->stats_.created);
        }
        if (ec) {
            held.reset();
            if (++self->consecutive_failures_ >= self->config_.max_consecutive_failures && !self->stopped_) {
                // A source that cannot start sandboxes would spin: fail the waiters instead, and
                // start none until someone asks again.
                self->unhealthy_ = true;
                self->waiters_.abort_all(pool_errc::unhealthy);
            }
        } else {
            self->consecutive_failures_ = 0;
            if (!self->stopped_) self->idle_.push_back(idle_vm{std::move(held), clock::now()});
        }
        self->serve();
        self->pause_idle();  // first: the next batch waits for these pauses
        self->refill();
        self->after_work();
    }

    // Pauses idle sandboxes between refill batches: once no sandbox is starting, and the next
    // batch waits for the pauses. Under the harness a VM paused while another restores
    // sometimes breaks the restoring guest (docs/known-issues.md); batches also keep a large
    // fill from running every idle guest's timer until the last one has started.
    void pause_idle() {
        if (!config_.pause_idle || stopped_ || starting_ > 0) return;
        for (auto& vm : idle_) {
            if (vm.paused) continue;
            vm.paused = true;
            ++pausing_;
            auto st = sandbox_access::state_of(vm.held->sandbox());
            asio::co_spawn(st->strand, st->pause_now(), [self = shared_from_this()](std::exception_ptr, error_code) {
                asio::post(self->strand_, [self] {
                    --self->pausing_;
                    self->refill();  // held back while the pause ran
                    self->after_work();
                });
            });
        }
    }

    // Hands idle sandboxes to waiting acquisitions, oldest of each first. One whose VM stopped
    // meanwhile (a guest that crashed while running) is replaced, never handed out.
    void serve() {
        while (!stopped_ && !waiters_.empty() && !idle_.empty()) {
            auto vm = std::move(idle_.front());
            idle_.pop_front();
            if (vm.held->sandbox().state() != microvm_state::ready) {
                vm.held.reset();
                std::lock_guard lock(stats_mutex_);
                ++stats_.failures;
                continue;
            }
            auto w = waiters_.pop_front();
            ++in_use_;
            record_acquire(w.request);
            waiters_.succeed(std::move(w.handler), pooled_vm(std::move(vm.held), weak_from_this()));
        }
        update_stats();
    }

    void record_acquire(const request& w) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - w.since).count();
        std::lock_guard lock(stats_mutex_);
        ++(w.idle_at_request ? stats_.hits : stats_.misses);
        std::size_t b = 0;
        while (b < vm_pool_stats::latency_bucket_ms.size() && ms >= vm_pool_stats::latency_bucket_ms[b]) ++b;
        ++stats_.acquire_latency_ms[b];
    }

    // Evicts idle sandboxes past max_idle_duration and checks the others every
    // health_check_interval, until the pool stops.
    static asio::awaitable<void> maintain(std::shared_ptr<vm_pool_state> self) {
        using std::chrono::milliseconds;
        const auto& c = self->config_;
        // Ticks fine enough for either duration, coarse enough to cost nothing; every tick also
        // replaces idle sandboxes whose VM stopped on its own (a guest panic, an agent that
        // died: the agent is PID 1), which costs an atomic load each.
        auto tick = milliseconds(1000);
        for (auto d : {c.max_idle_duration, c.health_check_interval})
            if (d.count() > 0) tick = std::min(tick, std::max(milliseconds(10), d / 4));
        auto next_check = clock::now() + c.health_check_interval;
        while (!self->stopped_) {
            self->maintenance_.expires_after(tick);
            auto [ec] = co_await self->maintenance_.async_wait(use_tuple);
            if (ec || self->stopped_) break;
            self->drop_stopped();
            if (c.max_idle_duration.count() > 0) self->evict_old();
            if (c.health_check_interval.count() > 0 && clock::now() >= next_check) {
                co_await self->check_idle();
                next_check = clock::now() + c.health_check_interval;
            }
        }
    }

    void drop_stopped() {
        const auto before = idle_.size();
        std::erase_if(idle_, [](const idle_vm& vm) { return vm.held->sandbox().state() != microvm_state::ready; });
        if (idle_.size() == before) return;
        {
            std::lock_guard lock(stats_mutex_);
            stats_.failures += before - idle_.size();
        }
        refill();
    }

    void evict_old() {
        const auto limit = clock::now() - config_.max_idle_duration;
        const auto before = idle_.size();
        std::erase_if(idle_, [&](const idle_vm& vm) { return vm.since < limit; });
        if (idle_.size() == before) return;
        {
            std::lock_guard lock(stats_mutex_);
            stats_.evictions += before - idle_.size();
        }
        refill();
    }

    // Each idle sandbox answers a request (resuming it if paused, pausing it again after), out
    // of the idle list meanwhile so it cannot be handed out half-checked.
    asio::awaitable<void> check_idle() {
        auto checking = std::exchange(idle_, {});
        checking_ += checking.size();
        update_stats();
        for (auto& vm : checking) {
            bool ok = vm.held->sandbox().state() == microvm_state::ready;
            if (ok) {
                auto [ec, exists] = co_await vm.held->sandbox().async_exists("/", use_tuple);
                co_await asio::post(strand_, asio::use_awaitable);
                ok = !ec && exists;
            }
            --checking_;
            if (stopped_) continue;
            if (!ok) {
                std::lock_guard lock(stats_mutex_);
                ++stats_.failures;
                continue;  // `checking` lets it go: its VM stops
            }
            vm.paused = false;
            idle_.push_back(std::move(vm));
            serve();
        }
        update_stats();
        pause_idle();
        refill();
        after_work();
    }

    // Completes a stop that waited for sandboxes starting, being checked or paused.
    void after_work() {
        update_stats();
        if (stopped_ && busy() == 0)
            for (auto& h : std::exchange(stop_waiters_, {})) complete(std::move(h), error_code{});
    }

    void update_stats() {
        std::lock_guard lock(stats_mutex_);
        stats_.idle = idle_.size();
        stats_.in_use = in_use_;
        stats_.starting = starting_;
        stats_.paused = static_cast<std::size_t>(
            std::count_if(idle_.begin(), idle_.end(), [](const idle_vm& vm) { return vm.held->sandbox().idle_paused(); }));
    }

    asio::strand<asio::any_io_executor> strand_;
    const vm_pool_config config_;
    std::unique_ptr<vm_source> source_;
    asio::steady_timer maintenance_;
    std::deque<idle_vm> idle_;
    waiter_queue<pooled_vm, request> waiters_{strand_};
    std::vector<asio::any_completion_handler<void(error_code)>> stop_waiters_;
    std::size_t starting_ = 0, checking_ = 0, pausing_ = 0, in_use_ = 0, consecutive_failures_ = 0;
    bool stopped_ = false, unhealthy_ = false;
    mutable std::mutex stats_mutex_;
    vm_pool_stats stats_;
};

}  // namespace detail

// ---- pooled_vm

pooled_vm::pooled_vm(std::unique_ptr<holder> held, std::weak_ptr<detail::vm_pool_state> pool) noexcept
    : holder_(std::move(held)), pool_(std::move(pool)) {}

pooled_vm::pooled_vm() noexcept = default;
pooled_vm::pooled_vm(pooled_vm&& other) noexcept = default;

pooled_vm::~pooled_vm() { release(); }

pooled_vm& pooled_vm::operator=(pooled_vm&& other) noexcept {
    if (this != &other) {
        release();
        holder_ = std::move(other.holder_);
        pool_ = std::move(other.pool_);
    }
    return *this;
}

microvm_sandbox& pooled_vm::sandbox() noexcept { return holder_ ? holder_->sandbox() : empty_; }

void pooled_vm::release() noexcept {
    if (!holder_) return;
    holder_.reset();  // the sandbox's destructor stops the VM; a restore_pool shell's capacity returns
    detail::return_capacity(pool_);
}

// ---- vm_pool

vm_pool::vm_pool(executor_type executor, vm_pool_config config)
    : vm_pool(executor, config, detail::make_vm_source(executor, config)) {}

vm_pool::vm_pool(executor_type executor, vm_pool_config config, std::unique_ptr<detail::vm_source> source)
    : state_(std::make_shared<detail::vm_pool_state>(std::move(executor), std::move(config), std::move(source))) {
    detail::raise_fd_limit();
    if (state_->config_ok()) state_->start();
}

vm_pool::~vm_pool() {
    // As async_stop, nobody waiting: on the pool's strand (at once when already on it), since
    // the pool's coroutines own what it touches; they hold the state until they finish.
    try {
        if (state_->running_in_this_thread()) state_->stop_now();
        else state_->stop([](boost::system::error_code) {});
    } catch (...) {
        // Out of memory: the sandboxes go when the last coroutine releases the state.
    }
}

const vm_pool_config& vm_pool::config() const noexcept { return state_->config(); }
vm_pool_stats vm_pool::stats() const { return state_->stats(); }

void vm_pool::initiate_acquire(boost::asio::any_completion_handler<void(error_code, pooled_vm)> handler) {
    state_->acquire(std::move(handler));
}

void vm_pool::initiate_stop(boost::asio::any_completion_handler<void(error_code)> handler) { state_->stop(std::move(handler)); }

}  // namespace mimobox::vm
