// What a microvm_sandbox shares with its in-flight operations and exec streams: the VM, the
// strand every sandbox coroutine runs on, the lifecycle state, and the pieces each operation
// uses to talk to the agent (open a connection, read until the answer, map errors).
#pragma once

#include "agent/response_reader.hpp"
#include "sandbox/agent_watchdog.hpp"
#include "sandbox/sandbox_vm.hpp"
#include "mimobox/vm/kvm_backend.hpp"
#include "mimobox/vm/microvm_state.hpp"
#include "mimobox/vm/sandbox_config.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <tuple>

namespace mimobox::vm::detail {

namespace asio = boost::asio;
using boost::system::error_code;

class sandbox_state;

/// Keeps a sandbox's VM running while held (sandbox_config::idle_pause_after): every agent
/// session holds one, an exec_stream's until its command ended. Strand only; move-only.
class awake_lease {
public:
    awake_lease() = default;
    explicit awake_lease(std::shared_ptr<sandbox_state> st) noexcept : st_(std::move(st)) {}
    awake_lease(awake_lease&& other) noexcept = default;
    awake_lease& operator=(awake_lease&& other) noexcept {
        if (this != &other) {
            release();
            st_ = std::move(other.st_);
        }
        return *this;
    }
    ~awake_lease() { release(); }
    void release() noexcept;
    bool held() const noexcept { return st_ != nullptr; }

private:
    std::shared_ptr<sandbox_state> st_;
};

class sandbox_state : public std::enable_shared_from_this<sandbox_state> {
public:
    /// A KVM microVM for `vm`, with the agent link `config` asks for.
    sandbox_state(asio::any_io_executor executor, microvm_config vm, sandbox_config config);
    /// A sandbox whose VM is restored from `snapshot` (its shape taken from the snapshot).
    sandbox_state(asio::any_io_executor executor, microvm_snapshot snapshot, sandbox_config config);
    /// Any VM (unit tests: one whose agent runs in the test process). `io` is the executor the
    /// sandbox was created with (its VM's strand when not given).
    sandbox_state(std::unique_ptr<sandbox_vm> vm, sandbox_config config, asio::any_io_executor io = {});

    const std::unique_ptr<sandbox_vm> vm;
    /// The VM's own strand (kvm_backend::get_executor): sandbox coroutines and the VM's devices
    /// take turns on one strand, so a stream operation started here reaches the device without
    /// a hop, and its completion resumes the coroutine without another.
    asio::any_io_executor strand;
    /// The executor the sandbox was created with: sandboxes made from this one (fork) get
    /// strands of their own on it, not of this sandbox's strand.
    asio::any_io_executor io_executor;
    const sandbox_config config;
    std::atomic<microvm_state> state{microvm_state::created};
    std::string agent_version;  // set once ready

    /// lifecycle_errc::invalid_state unless the sandbox is ready.
    error_code check_ready() const;
    /// Moves to `to` if the transition is allowed; false otherwise.
    bool transition(microvm_state to);
    /// Maps an I/O error on an agent connection to what the caller should see: the VM having
    /// stopped wins (vm_stopped), a connection that ended is agent_disconnected, a cancelled
    /// operation stays operation_aborted.
    error_code classify(error_code io_error) const;
    /// The same for a connection under `watchdog`: a failure it caused is agent_timeout.
    error_code classify(error_code io_error, const agent_watchdog& watchdog) const;

    /// A connection to the agent: the oldest spare if there is one (see refill_spares), one
    /// being opened as a spare if its handshake is under way, else a new one, retrying while
    /// nothing listens yet (boot, or the agent's server restarting) until `deadline`
    /// (ready_timeout); a guest that does not complete the handshake by then gives agent_timeout.
    /// Cancellation: per operation; the connection being waited for stays a spare.
    asio::awaitable<std::tuple<error_code, vsock_stream>> connect_agent(std::chrono::steady_clock::time_point deadline);
    /// Opens connections ahead of need, up to `spare_target`, so an operation skips the vsock
    /// handshake (one guest round trip, milliseconds under nested virtualization). Operations
    /// call it as soon as the guest's first bytes for them arrive (for a short command, the
    /// answer), before parsing them, and yield once so that the REQUEST goes out first: the
    /// guest then handles the handshake while it would otherwise wait for our processing and
    /// the next request, instead of in the middle of that request's command. True if it
    /// opened any. Strand only.
    bool refill_spares();
    static constexpr std::size_t spare_target = 2;

    /// Takes a lease that keeps the VM running, resuming it first if idle_pause_after paused
    /// it. Fails (vm_stopped, or the resume's error) if the VM cannot run. Cancellation:
    /// terminal; a resume already started completes for the next operation.
    asio::awaitable<std::tuple<error_code, awake_lease>> hold_awake();
    /// Starts counting idle time (the sandbox just became ready). Strand only.
    void start_idle_clock();
    /// Pauses the VM now, as idle_pause_after would, if the sandbox is ready and nothing holds
    /// it awake (else does nothing); the next operation resumes it. For vm_pool, which pauses
    /// the sandboxes it keeps. Strand only.
    asio::awaitable<error_code> pause_now();
    /// Whether idle_pause_after has the VM paused now (any thread).
    bool idle_paused() const noexcept { return idle_phase_.load() == idle_phase::paused; }
    /// How often it paused so far (any thread).
    std::uint64_t idle_pauses() const noexcept { return idle_pauses_.load(); }

private:
    friend class awake_lease;
    void release_awake() noexcept;
    void on_idle();
    void open_spare();

    // The idle pause's state machine, strand only (atomic for the getters): running <->
    // pausing -> paused -> resuming -> running. hold_awake waits out pausing and resuming.
    enum class idle_phase { running, pausing, paused, resuming };
    std::atomic<idle_phase> idle_phase_{idle_phase::running};
    std::atomic<std::uint64_t> idle_pauses_{0};
    std::size_t awake_holders_ = 0;
    asio::steady_timer idle_timer_;
    asio::steady_timer phase_changed_;  // never expires; cancel() wakes hold_awake's waiters
    void set_phase(idle_phase p);

    std::deque<vsock_stream> spares_;
    std::size_t spares_pending_ = 0;
    asio::steady_timer* spare_waiter_ = nullptr;  // an operation waiting for a pending spare
};

/// How long an operation on a ready sandbox retries a refused connection (the agent's server
/// restarts within a second if it dies; under load a full accept queue refuses briefly too).
inline constexpr std::chrono::seconds agent_connect_patience{30};

/// Connects (retrying refusals until `connect_deadline`), sends `request`, returns its response;
/// sandbox_errc::agent_timeout if the guest moves nothing for sandbox_config::agent_idle_timeout.
asio::awaitable<std::tuple<error_code, agent::response>> transact(std::shared_ptr<sandbox_state> st, agent::request request,
                                                                  std::chrono::steady_clock::time_point connect_deadline);
/// transact() for operations without data, on a ready sandbox.
asio::awaitable<std::tuple<error_code, agent::response>> call_agent(std::shared_ptr<sandbox_state> st, agent::request request);

/// An agent error response as the caller's error: guest_file_errc for file operations,
/// sandbox_errc::agent_error otherwise; a response of the wrong type is agent_protocol.
error_code error_from_response(const agent::response& r, bool file_operation);

}  // namespace mimobox::vm::detail
