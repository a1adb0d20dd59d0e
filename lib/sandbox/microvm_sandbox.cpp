#include "mimobox/vm/microvm_sandbox.hpp"

#include "mimobox/vm/error.hpp"
#include "pool/fd_limit.hpp"
#include "sandbox/exec_stream_state.hpp"
#include "sandbox/spawn_operation.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <random>
#include <thread>

namespace mimobox::vm {

namespace detail {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string host_entropy(std::size_t n) {
    std::random_device rd;  // getrandom() on Linux
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(rd());
    return out;
}

// Outside the coroutines on purpose: GCC 12 miscompiles braced initialization of aggregates
// with std::string members inside coroutine bodies (the SSO pointer ends up in the wrong frame).
agent::request init_request_for(const sandbox_config& config) {
    agent::init_request init;
    init.entropy = host_entropy(config.rng_seed_bytes);
    init.hostname = config.hostname;
    init.wall_clock_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    init.force_reseed = true;
    return init;
}

// Ping until the agent answers: connections are refused until it listens, the guest may
// accept and then lose a connection while its server (re)starts, and a ping may go unanswered.
asio::awaitable<std::tuple<error_code, std::string>> await_agent(std::shared_ptr<sandbox_state> st,
                                                                 std::chrono::steady_clock::time_point deadline) {
    using namespace asio::experimental::awaitable_operators;
    for (;;) {
        asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
        auto outcome = co_await (transact(st, agent::ping_request{}, deadline) || timer.async_wait(use_tuple));
        if (outcome.index() == 1) co_return std::tuple{error_code(sandbox_errc::ready_timeout), std::string()};
        auto [ec, response] = std::get<0>(std::move(outcome));
        if (!ec) {
            if (auto* pong = std::get_if<agent::pong_response>(&response)) co_return std::tuple{error_code{}, pong->agent_version};
            co_return std::tuple{error_code(sandbox_errc::agent_protocol), std::string()};
        }
        // A connection lost, or a ping left unanswered (agent_idle_timeout): ask again, until
        // ready_timeout says no more (the connect's own deadline is the same one: past it,
        // asking again would only spin).
        if (std::chrono::steady_clock::now() >= deadline) co_return std::tuple{error_code(sandbox_errc::ready_timeout), std::string()};
        if (ec != sandbox_errc::agent_disconnected && ec != sandbox_errc::agent_timeout) co_return std::tuple{ec, std::string()};
    }
}

asio::awaitable<std::tuple<error_code>> start(std::shared_ptr<sandbox_state> st) {
    if (!st->transition(microvm_state::booting)) co_return std::tuple{error_code(lifecycle_errc::invalid_state)};
    // Every way out short of `ready` leaves the sandbox failed and its VM stopping: an error
    // below, and a cancellation that throws out of a co_await.
    struct fail_unless_ready {
        sandbox_state& st;
        ~fail_unless_ready() {
            if (st.state.load() != microvm_state::booting) return;
            st.transition(microvm_state::failed);
            try {
                st.vm->async_stop(asio::detached);  // a half-started VM is of no use to anyone
            } catch (const std::bad_alloc&) {
                // The sandbox's destructor stops the VM.
            }
        }
    } settle{*st};
    auto fail = [](error_code ec) { return std::tuple{ec}; };
    if (st->config.transport != kvm_transport::vsock && st->config.transport != kvm_transport::serial)
        co_return fail(sandbox_errc::unsupported_transport);
    if (st->config.hostname.size() > 64 || st->config.rng_seed_bytes > 512)
        co_return fail(boost::system::errc::make_error_code(boost::system::errc::invalid_argument));
    const auto deadline = std::chrono::steady_clock::now() + st->config.ready_timeout;
    auto [bec] = co_await st->vm->async_boot(use_tuple);
    if (bec) co_return fail(bec);
    auto [aec, version] = co_await await_agent(st, deadline);
    if (aec) co_return fail(aec);
    // The guest answered a ping; it still gets no longer than ready_timeout for the rest.
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer limit(co_await asio::this_coro::executor, deadline);
    auto init = co_await (transact(st, init_request_for(st->config), deadline) || limit.async_wait(use_tuple));
    if (init.index() == 1) co_return fail(sandbox_errc::ready_timeout);
    auto [iec, response] = std::get<0>(std::move(init));
    if (iec == sandbox_errc::agent_timeout) co_return fail(sandbox_errc::ready_timeout);  // it never became ready
    if (iec) co_return fail(iec);
    if (!std::holds_alternative<agent::ok_response>(response)) co_return fail(error_from_response(response, false));
    st->agent_version = version;
    if (!st->transition(microvm_state::ready)) co_return std::tuple{error_code(lifecycle_errc::invalid_state)};
    st->refill_spares();
    st->start_idle_clock();
    // A VM that stops on its own (guest poweroff, crash) leaves the sandbox failed.
    st->vm->async_wait_stopped([weak = std::weak_ptr<sandbox_state>(st)](error_code, vm_stop_info) {
        if (auto s = weak.lock()) s->transition(microvm_state::failed);
    });
    co_return std::tuple{error_code{}};
}

asio::awaitable<std::tuple<error_code, microvm_sandbox>> create(microvm_sandbox sb) {
    auto [ec] = co_await sb.async_start(use_tuple);
    if (ec) co_return std::tuple{ec, microvm_sandbox()};
    co_return std::tuple{error_code{}, std::move(sb)};
}

// Pause, capture, resume: the sandbox goes on whatever the capture's outcome.
asio::awaitable<std::tuple<error_code, microvm_snapshot>> take_snapshot(std::shared_ptr<sandbox_state> st) {
    if (auto ec = st->check_ready()) co_return std::tuple{ec, microvm_snapshot()};
    kvm_backend* backend = st->vm->backend();
    if (!backend) co_return std::tuple{error_code(boost::system::errc::make_error_code(boost::system::errc::operation_not_supported)), microvm_snapshot()};
    // The idle pause keeps out of the way (and an idle-paused VM resumes: its capture then
    // pauses it the usual way).
    auto [aec, awake] = co_await st->hold_awake();
    if (aec) co_return std::tuple{aec, microvm_snapshot()};
    auto [pec] = co_await backend->async_pause(use_tuple);
    if (pec) co_return std::tuple{pec, microvm_snapshot()};
    auto [sec, snap] = co_await backend->async_snapshot(use_tuple);
    auto [rec] = co_await backend->async_resume(use_tuple);
    if (sec) co_return std::tuple{sec, microvm_snapshot()};
    if (rec) co_return std::tuple{rec, microvm_snapshot()};
    co_return std::tuple{error_code{}, std::move(snap)};
}

// "<base>-<k>", k unique in this process, cut to the 64 bytes a hostname may have.
std::string fork_hostname(const std::string& base) {
    static std::atomic<std::uint64_t> next{1};
    const std::string suffix = "-" + std::to_string(next.fetch_add(1, std::memory_order_relaxed));
    return base.substr(0, 64 - std::min<std::size_t>(64, suffix.size())) + suffix;
}

sandbox_config clone_config(const sandbox_config& parent) {
    sandbox_config c = parent;
    c.hostname = fork_hostname(parent.hostname);
    return c;
}

asio::awaitable<std::tuple<error_code, std::vector<microvm_sandbox>>> fork(std::shared_ptr<sandbox_state> st, std::size_t n) {
    using clones = std::vector<microvm_sandbox>;
    if (n == 0 || n > microvm_sandbox::max_fork)
        co_return std::tuple{error_code(boost::system::errc::make_error_code(boost::system::errc::invalid_argument)), clones()};
    raise_fd_limit();
    // The parent stays up until its clones are: a fork is an operation on it.
    auto [aec, awake] = co_await st->hold_awake();
    if (aec) co_return std::tuple{aec, clones()};
    auto [sec, snap] = co_await take_snapshot(st);
    if (sec) co_return std::tuple{sec, clones()};
    // Restores in waves of a few per host CPU: each is a VM of its own, on a strand of its own
    // of the executor this sandbox was made with, so a wave proceeds in parallel on a thread
    // pool. More at once would only share the CPUs more thinly: with hundreds started together
    // on a small host, each one's guest handshake could outlast ready_timeout.
    using restore_op = decltype(microvm_sandbox::async_restore(st->io_executor, snap, sandbox_config(), asio::deferred));
    const std::size_t wave = std::max<std::size_t>(4, 2 * std::thread::hardware_concurrency());
    clones made;
    made.reserve(n);
    while (made.size() < n) {
        std::vector<restore_op> ops;
        const std::size_t count = std::min(wave, n - made.size());
        ops.reserve(count);
        for (std::size_t i = 0; i < count; ++i)
            ops.push_back(microvm_sandbox::async_restore(st->io_executor, snap, clone_config(st->config), asio::deferred));
        auto [order, errors, batch] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                          .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        for (std::size_t i : order)
            if (errors[i]) co_return std::tuple{errors[i], clones()};  // `made` and `batch` go, stopping every clone
        for (auto& c : batch) made.push_back(std::move(c));
    }
    co_return std::tuple{error_code{}, std::move(made)};
}

asio::awaitable<std::tuple<error_code, exec_stream>> start_stream(std::shared_ptr<sandbox_state> st, agent::exec_request rq) {
    auto [ec, es] = co_await open_exec(st, std::move(rq));
    if (ec) co_return std::tuple{ec, exec_stream()};
    co_return std::tuple{error_code{}, exec_stream(std::move(es))};
}

asio::awaitable<std::tuple<error_code>> destroy(std::shared_ptr<sandbox_state> st) {
    if (!st->transition(microvm_state::destroying)) co_return std::tuple{error_code(lifecycle_errc::invalid_state)};
    auto [ec] = co_await st->vm->async_stop(use_tuple);
    st->transition(microvm_state::destroyed);
    co_return std::tuple{ec};
}

}  // namespace

agent::exec_request make_exec_request(std::vector<std::string> argv, std::optional<std::string> shell,
                                      const guest_exec_options& o) {
    agent::exec_request rq;
    rq.argv = std::move(argv);
    rq.shell = std::move(shell);
    rq.env = o.env;
    rq.cwd = o.cwd;
    rq.timeout_ms = static_cast<std::uint64_t>(o.timeout.count());
    rq.max_output = o.max_output_bytes;
    rq.stdin_open = o.open_stdin;
    return rq;
}

}  // namespace detail

microvm_sandbox::microvm_sandbox(executor_type executor, microvm_config vm, sandbox_config config)
    : state_(std::make_shared<detail::sandbox_state>(std::move(executor), std::move(vm), std::move(config))) {}

microvm_sandbox& microvm_sandbox::operator=(microvm_sandbox&& other) noexcept {
    if (this != &other) {
        microvm_sandbox gone(std::move(*this));  // stops our old VM
        state_ = std::move(other.state_);
    }
    return *this;
}

microvm_sandbox::~microvm_sandbox() {
    if (!state_) return;
    // In-flight operations share the state; stopping the VM is what ends them (vm_stopped).
    if (state_->transition(microvm_state::destroying)) state_->vm->async_stop(boost::asio::detached);
}

microvm_sandbox::executor_type microvm_sandbox::get_executor() const noexcept { return state_->strand; }
microvm_state microvm_sandbox::state() const noexcept { return state_ ? state_->state.load() : microvm_state::destroyed; }
std::string microvm_sandbox::agent_version() const { return state_ ? state_->agent_version : std::string(); }
bool microvm_sandbox::idle_paused() const noexcept { return state_ && state_->idle_paused(); }
kvm_backend& microvm_sandbox::backend() noexcept { return *state_->vm->backend(); }

void microvm_sandbox::initiate_create(executor_type ex, microvm_config vm, sandbox_config config, handler<microvm_sandbox> h) {
    microvm_sandbox sb(std::move(ex), std::move(vm), std::move(config));
    auto st = sb.state_;
    detail::spawn_operation(st, detail::terminal_or_partial, detail::create(std::move(sb)), std::move(h));
}

void microvm_sandbox::initiate_restore(executor_type ex, microvm_snapshot snapshot, sandbox_config config, handler<microvm_sandbox> h) {
    microvm_sandbox sb(std::make_shared<detail::sandbox_state>(std::move(ex), std::move(snapshot), std::move(config)));
    auto st = sb.state_;
    detail::spawn_operation(st, detail::terminal_or_partial, detail::create(std::move(sb)), std::move(h));
}

void microvm_sandbox::initiate_snapshot(handler<microvm_snapshot> h) {
    detail::spawn_operation(state_, detail::not_cancellable, detail::take_snapshot(state_), std::move(h));
}

void microvm_sandbox::initiate_fork(std::size_t n, handler<std::vector<microvm_sandbox>> h) {
    detail::spawn_operation(state_, detail::not_cancellable, detail::fork(state_, n), std::move(h));
}

void microvm_sandbox::initiate_start(handler<> h) { detail::spawn_operation(state_, detail::terminal_or_partial, detail::start(state_), std::move(h)); }

void microvm_sandbox::initiate_exec(std::vector<std::string> argv, std::optional<std::string> shell,
                                    guest_exec_options options, handler<guest_command_result> h) {
    auto stdin_data = std::move(options.stdin_data);
    options.open_stdin = false;  // run_collect opens it when there is data
    auto rq = detail::make_exec_request(std::move(argv), std::move(shell), options);
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::run_collect(state_, std::move(rq), std::move(stdin_data)), std::move(h));
}

void microvm_sandbox::initiate_exec_stream(std::vector<std::string> argv, guest_exec_options options, handler<exec_stream> h) {
    auto rq = detail::make_exec_request(std::move(argv), std::nullopt, options);
    detail::spawn_operation(state_, detail::terminal_or_partial, detail::start_stream(state_, std::move(rq)), std::move(h));
}

void microvm_sandbox::initiate_destroy(handler<> h) { detail::spawn_operation(state_, detail::not_cancellable, detail::destroy(state_), std::move(h)); }

}  // namespace mimobox::vm
