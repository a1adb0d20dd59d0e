#include "sandbox/sandbox_state.hpp"

#include "sandbox/agent_session.hpp"
#include "sandbox/spawn_operation.hpp"

#include "mimobox/vm/error.hpp"
#include "vsock/connection.hpp"
#include "vsock/vsock_errc.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <new>

namespace mimobox::vm::detail {

namespace {
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The agent speaks the same protocol over either link; the sandbox's transport picks the VM's.
microvm_config with_agent_link(microvm_config vm, const sandbox_config& cfg) {
    if (cfg.transport == kvm_transport::serial) vm.vsock = vsock_link::com2_uart;
    return vm;
}
}  // namespace

sandbox_state::sandbox_state(asio::any_io_executor executor, microvm_config vm, sandbox_config cfg)
    : sandbox_state(std::make_unique<kvm_sandbox_vm>(executor, with_agent_link(std::move(vm), cfg)), std::move(cfg), executor) {}

namespace {
microvm_config shape_of(const microvm_snapshot& snapshot) {
    microvm_config vm;
    vm.vcpu_count = snapshot.vcpu_count();
    vm.memory_mib = snapshot.memory_mib();
    vm.vsock = snapshot.vsock();
    return vm;
}
}  // namespace

sandbox_state::sandbox_state(asio::any_io_executor executor, microvm_snapshot snapshot, sandbox_config cfg)
    : sandbox_state(std::make_unique<kvm_sandbox_vm>(executor, with_agent_link(shape_of(snapshot), cfg), snapshot),
                    std::move(cfg), executor) {}

sandbox_state::sandbox_state(std::unique_ptr<sandbox_vm> v, sandbox_config cfg, asio::any_io_executor io)
    : vm(std::move(v)),
      strand(vm->get_executor()),
      io_executor(io ? std::move(io) : strand),
      config(std::move(cfg)),
      idle_timer_(strand),
      phase_changed_(strand, asio::steady_timer::time_point::max()) {}

error_code sandbox_state::check_ready() const {
    return state.load() == microvm_state::ready ? error_code{} : error_code(lifecycle_errc::invalid_state);
}

bool sandbox_state::transition(microvm_state to) {
    auto from = state.load();
    do {
        if (!is_valid_transition(from, to)) return false;
    } while (!state.compare_exchange_weak(from, to));
    return true;
}

error_code sandbox_state::classify(error_code ec) const {
    if (!ec) return ec;
    if (vm->state() == kvm_lifecycle::stopped || vm->state() == kvm_lifecycle::stopping)
        return sandbox_errc::vm_stopped;
    if (ec == asio::error::operation_aborted) return ec;
    if (ec == asio::error::eof || ec == vsock::vsock_errc::connection_reset || ec == vsock::vsock_errc::connection_closed)
        return sandbox_errc::agent_disconnected;
    return ec;
}

bool sandbox_state::refill_spares() {
    if (state.load() != microvm_state::ready) return false;
    bool opened = false;
    while (spares_.size() + spares_pending_ < spare_target) {
        open_spare();
        opened = true;
    }
    return opened;
}

void sandbox_state::open_spare() {
    ++spares_pending_;
    vm->async_vsock_connect(config.agent_port, asio::bind_executor(strand, [self = shared_from_this()](error_code ec, vsock_stream s) {
        --self->spares_pending_;
        // A plain handler: an exception here would leave io_context::run. Without memory for
        // one more spare, the operation that wanted it opens its own connection.
        try {
            if (!ec && self->state.load() == microvm_state::ready) self->spares_.push_back(std::move(s));
        } catch (const std::bad_alloc&) {
        }
        if (self->spare_waiter_) self->spare_waiter_->cancel();  // wakes it: a spare (or its failure) is here
    }));
}

asio::awaitable<std::tuple<error_code, vsock_stream>> sandbox_state::connect_agent(std::chrono::steady_clock::time_point deadline) {
    if (spares_.empty() && spares_pending_ > 0 && !spare_waiter_) {
        // A spare's handshake is under way: it arrives sooner than a connection started now.
        asio::steady_timer wake(strand, deadline);
        spare_waiter_ = &wake;
        // Cleared however the wait ends: a cancellation may throw from the co_await.
        struct clear_waiter {
            asio::steady_timer*& waiter;
            ~clear_waiter() { waiter = nullptr; }
        } clear{spare_waiter_};
        auto [woken] = co_await wake.async_wait(use_tuple);  // "aborted" when woken by cancel()
        if (!woken) co_return std::tuple{error_code(sandbox_errc::agent_timeout), vsock_stream{}};
        // Woken by open_spare's handler, or cancelled by our caller while the spare is on its way.
        if (spares_.empty() && spares_pending_ > 0)
            co_return std::tuple{error_code(asio::error::operation_aborted), vsock_stream{}};
    }
    if (!spares_.empty()) {
        vsock_stream s = std::move(spares_.front());
        spares_.pop_front();
        // The replacement is opened when the guest's first bytes for this operation arrive
        // (refill_spares), unless none is left or on its way: then now, so the next operation
        // does not wait for one.
        if (spares_.empty() && spares_pending_ == 0) refill_spares();
        co_return std::tuple{error_code{}, std::move(s)};
    }
    refill_spares();  // for the operations after this one
    auto backoff = std::chrono::milliseconds(2);
    for (;;) {
        if (std::chrono::steady_clock::now() >= deadline) co_return std::tuple{error_code(sandbox_errc::agent_timeout), vsock_stream{}};
        // The guest need not answer our REQUEST at all: the wait for its RESPONSE ends at the
        // deadline too (the losing connect is cancelled, which resets it).
        asio::steady_timer limit(strand, deadline);
        auto outcome = co_await (vm->async_vsock_connect(config.agent_port, use_tuple) || limit.async_wait(use_tuple));
        if (outcome.index() == 1) co_return std::tuple{error_code(sandbox_errc::agent_timeout), vsock_stream{}};
        auto [ec, s] = std::get<0>(std::move(outcome));
        if (ec != vsock::vsock_errc::connection_refused) co_return std::tuple{classify(ec), std::move(s)};
        // Nobody listens yet: the guest is still booting, or the agent's server is restarting.
        if (std::chrono::steady_clock::now() + backoff > deadline) co_return std::tuple{error_code(sandbox_errc::ready_timeout), vsock_stream{}};
        asio::steady_timer timer(co_await asio::this_coro::executor, backoff);
        auto [tec] = co_await timer.async_wait(use_tuple);
        if (tec) co_return std::tuple{error_code(tec), vsock_stream{}};
        backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
    }
}

void awake_lease::release() noexcept {
    if (auto st = std::exchange(st_, nullptr)) st->release_awake();
}

asio::awaitable<std::tuple<error_code, awake_lease>> sandbox_state::hold_awake() {
    ++awake_holders_;
    awake_lease lease(shared_from_this());  // given back however this ends, a throw included
    idle_timer_.cancel();
    for (;;) {
        switch (idle_phase_.load()) {
            case idle_phase::running:
                co_return std::tuple{error_code{}, std::move(lease)};
            case idle_phase::pausing:
            case idle_phase::resuming:
                // Woken by set_phase (the timer never expires on its own).
                co_await phase_changed_.async_wait(use_tuple);
                break;
            case idle_phase::paused: {
                set_phase(idle_phase::resuming);
                auto [ec] = co_await vm->async_resume(use_tuple);
                set_phase(ec ? idle_phase::paused : idle_phase::running);
                if (ec) co_return std::tuple{classify(ec), awake_lease()};
                break;
            }
        }
    }
}

void sandbox_state::release_awake() noexcept {
    if (--awake_holders_ == 0) start_idle_clock();
}

void sandbox_state::start_idle_clock() {
    if (config.idle_pause_after.count() <= 0 || awake_holders_ > 0 || idle_phase_.load() != idle_phase::running) return;
    if (state.load() != microvm_state::ready) return;
    idle_timer_.expires_after(config.idle_pause_after);
    idle_timer_.async_wait([weak = weak_from_this()](error_code ec) {
        if (auto st = weak.lock(); st && !ec) st->on_idle();
    });
}

void sandbox_state::on_idle() {
    // pause_now checks again that nothing holds the VM awake; a VM that stopped meanwhile
    // stays "running" there, and operations then fail with vm_stopped.
    asio::co_spawn(strand, pause_now(), asio::detached);
}

asio::awaitable<error_code> sandbox_state::pause_now() {
    if (awake_holders_ > 0 || idle_phase_.load() != idle_phase::running || state.load() != microvm_state::ready)
        co_return error_code{};
    idle_timer_.cancel();
    set_phase(idle_phase::pausing);
    auto [ec] = co_await vm->async_pause(use_tuple);
    if (!ec) ++idle_pauses_;
    set_phase(ec ? idle_phase::running : idle_phase::paused);
    co_return ec;
}

void sandbox_state::set_phase(idle_phase p) {
    idle_phase_.store(p);
    phase_changed_.cancel();
}

error_code sandbox_state::classify(error_code ec, const agent_watchdog& watchdog) const {
    if (ec && watchdog.fired()) return sandbox_errc::agent_timeout;
    return classify(ec);
}

asio::awaitable<std::tuple<error_code, agent::response>> transact(std::shared_ptr<sandbox_state> st, agent::request request,
                                                                  std::chrono::steady_clock::time_point connect_deadline) {
    agent_session session(st);
    if (auto ec = co_await session.open(request, connect_deadline)) co_return std::tuple{ec, agent::response()};
    session.watchdog().arm_idle(st->strand, session.stream(), st->config.agent_idle_timeout);
    co_return co_await session.read_response();
}

asio::awaitable<std::tuple<error_code, agent::response>> call_agent(std::shared_ptr<sandbox_state> st, agent::request request) {
    if (auto ec = st->check_ready()) co_return std::tuple{ec, agent::response()};
    co_return co_await transact(st, std::move(request), std::chrono::steady_clock::now() + agent_connect_patience);
}

error_code error_from_exception(std::exception_ptr ep) noexcept {
    try {
        std::rethrow_exception(ep);
    } catch (const boost::system::system_error& e) {
        return e.code();
    } catch (const std::bad_alloc&) {
        return make_error_code(boost::system::errc::not_enough_memory);
    } catch (...) {
        return sandbox_errc::internal_error;
    }
}

error_code error_from_response(const agent::response& r, bool file_operation) {
    if (auto* e = std::get_if<agent::error_response>(&r)) {
        if (file_operation) return guest_file_errc_from_errno(e->error_number);
        return sandbox_errc::agent_error;
    }
    return sandbox_errc::agent_protocol;
}

}  // namespace mimobox::vm::detail
