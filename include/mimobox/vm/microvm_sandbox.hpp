// A microVM with the mimobox agent inside: run commands and move files from coroutines.
//
//   auto sb = co_await microvm_sandbox::async_create(ex, vm_config, asio::use_awaitable);
//   std::vector<std::string> argv{"uname", "-a"};
//   auto r = co_await sb.async_exec(argv, asio::use_awaitable);
//   auto limited = co_await sb.async_exec(argv, {}, asio::use_awaitable);  // options: {} or a guest_exec_options
//
// (GCC 12 cannot compile a braced list such as {"uname", "-a"} inside a co_await operand; name
// the vector, as above. `{}` for options and configs is fine: they are not aggregates.)
//
// Every operation opens its own vsock connection to the agent, so operations run concurrently
// (hundreds on one VM) and a slow one never holds up another. Operations need the `ready`
// state (lifecycle_errc::invalid_state otherwise); see microvm_state.hpp for the transitions.
//
// Threading and lifetimes: the sandbox's coroutines run on its VM's strand, a strand of the
// executor it was created with (get_executor()); handlers run on their associated executor
// (else that strand).
// In-flight operations keep what they need alive: destroying the sandbox object stops the VM,
// and they complete with sandbox_errc::vm_stopped.
//
// Cancellation (per operation, through the completion handler's cancellation slot; it may be
// emitted from any thread). What each honours, and what it leaves; every one of them then
// completes with operation_aborted:
// - async_create, async_start: terminal and partial. The VM is stopped and the sandbox is
//   `failed` (async_create hands back none).
// - async_exec, async_exec_shell, async_exec_stream: terminal and partial. The connection is
//   hung up, which kills the command's whole process group in the guest; the sandbox stays
//   usable.
// - async_read_file, async_list_dir, async_stat, async_exists: terminal, partial and total:
//   they change nothing in the guest.
// - async_write_file: terminal and partial; the target holds its old contents or the whole
//   new ones, never a mix (writes are atomic: temporary file, then rename).
// - async_remove, async_rename, async_mkdir: terminal and partial; done or not done (a
//   recursive remove may have removed part of the tree).
// - async_restore: as async_create.
// - async_snapshot, async_fork, async_destroy: not cancellable.
// A type an operation does not honour is ignored: the operation runs to its end. A
// cancellation that arrives after the operation's work is done does not undo it: the result
// is delivered as usual. exec_stream.hpp lists its own operations.
//
// Errors: sandbox_errc (agent gone, VM stopped, not ready in time), guest_file_errc (file
// operations), lifecycle_errc (state misuse), microvm_errc (bad VM config or images).
// A command that runs and fails is not an error: see guest_command_result.
#pragma once

#include "mimobox/vm/exec_stream.hpp"
#include "mimobox/vm/guest_exec.hpp"
#include "mimobox/vm/guest_file.hpp"
#include "mimobox/vm/kvm_backend.hpp"
#include "mimobox/vm/microvm_config.hpp"
#include "mimobox/vm/microvm_state.hpp"
#include "mimobox/vm/sandbox_config.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <memory>
#include <string>
#include <vector>

namespace mimobox::vm {

namespace detail {
class sandbox_state;
struct sandbox_access;
}

class microvm_sandbox {
public:
    using executor_type = boost::asio::any_io_executor;
    using error_code = boost::system::error_code;

    /// A sandbox in state `created`; nothing runs until async_start.
    microvm_sandbox(executor_type executor, microvm_config vm, sandbox_config config = {});
    /// Empty: state() is destroyed and every async operation completes with
    /// lifecycle_errc::invalid_state; get_executor() and backend() must not be called.
    microvm_sandbox() = default;
    microvm_sandbox(microvm_sandbox&&) noexcept = default;
    microvm_sandbox& operator=(microvm_sandbox&&) noexcept;
    ~microvm_sandbox();  ///< stops the VM unless destroyed already

    executor_type get_executor() const noexcept;
    microvm_state state() const noexcept;
    /// The agent's version string, once ready.
    std::string agent_version() const;
    /// Whether sandbox_config::idle_pause_after has the VM paused now (the next operation
    /// resumes it). State stays `ready` meanwhile.
    bool idle_paused() const noexcept;
    /// The VM underneath (console output, stop reason, vsock). Precondition: the sandbox is
    /// not empty.
    kvm_backend& backend() noexcept;

    /// Creates, boots and waits for the agent: async_start on a new sandbox.
    template <boost::asio::completion_token_for<void(error_code, microvm_sandbox)> Token>
    static auto async_create(executor_type executor, microvm_config vm, sandbox_config config, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, microvm_sandbox)>(
            [](auto handler, executor_type ex, microvm_config v, sandbox_config c) {
                initiate_create(std::move(ex), std::move(v), std::move(c), std::move(handler));
            },
            token, std::move(executor), std::move(vm), std::move(config));
    }
    /// As above, with a default sandbox_config.
    template <boost::asio::completion_token_for<void(error_code, microvm_sandbox)> Token>
    static auto async_create(executor_type executor, microvm_config vm, Token&& token) {
        return async_create(std::move(executor), std::move(vm), sandbox_config(), std::forward<Token>(token));
    }

    /// A new sandbox from a snapshot (its VM is restored, not booted: kvm_backend::async_restore),
    /// ready when this completes. The agent is told the host's wall clock, gets fresh entropy
    /// with a forced CRNG reseed, and sets `config.hostname`, so no two restores of one snapshot
    /// share their random bytes or their name. Connections and exec streams the captured
    /// sandbox had are gone; files, processes and memory are as they were. The VM's shape
    /// comes from the snapshot. Errors: those of async_create, and snapshot_errc
    /// (shape_mismatch if `config.transport` is not the snapshot's, cpu_mismatch, ...).
    /// Cancellation: as async_create.
    template <boost::asio::completion_token_for<void(error_code, microvm_sandbox)> Token>
    static auto async_restore(executor_type executor, microvm_snapshot snapshot, sandbox_config config, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, microvm_sandbox)>(
            [](auto handler, executor_type ex, microvm_snapshot s, sandbox_config c) {
                initiate_restore(std::move(ex), std::move(s), std::move(c), std::move(handler));
            },
            token, std::move(executor), std::move(snapshot), std::move(config));
    }
    /// As above, with a default sandbox_config.
    template <boost::asio::completion_token_for<void(error_code, microvm_sandbox)> Token>
    static auto async_restore(executor_type executor, microvm_snapshot snapshot, Token&& token) {
        return async_restore(std::move(executor), std::move(snapshot), sandbox_config(), std::forward<Token>(token));
    }

    /// Captures the sandbox (ready state): pauses its VM, snapshots it in memory and resumes
    /// it, so the sandbox goes on as before. Operations in flight are only delayed. Use the
    /// snapshot with async_restore, or save() it. Errors: lifecycle_errc::invalid_state (not
    /// ready), snapshot_errc::unsupported_vm (the serial transport), the VM's. Not cancellable.
    template <boost::asio::completion_token_for<void(error_code, microvm_snapshot)> Token>
    auto async_snapshot(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, microvm_snapshot)>(
            [this](auto handler) { initiate_snapshot(std::move(handler)); }, token);
    }

    /// Forks the sandbox into `n` new ones (1..max_fork): one capture in memory (as
    /// async_snapshot: this sandbox is paused for it, then goes on), then `n` restores of it
    /// run in parallel, a few per host CPU at a time. Each clone is its own VM with this one's files, processes and memory,
    /// its own hostname (this one's, suffixed "-<k>" with k unique in the process), fresh
    /// entropy and the current clock; clones share the memory none of them changed. Clones of
    /// clones work the same way. All or nothing: if one clone fails, the others are destroyed
    /// and the first error is reported. Clones inherit this sandbox's sandbox_config (so an
    /// idle_pause_after pauses them once idle). The process's RLIMIT_NOFILE soft limit is
    /// raised to its hard limit first. Errors: those of async_snapshot and async_restore
    /// (descriptors or memory running out: condition::out_of_host_resources);
    /// errc::invalid_argument for `n` out of range. Not cancellable.
    static constexpr std::size_t max_fork = 1024;
    template <boost::asio::completion_token_for<void(error_code, std::vector<microvm_sandbox>)> Token>
    auto async_fork(std::size_t n, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, std::vector<microvm_sandbox>)>(
            [this, n](auto handler) { initiate_fork(n, std::move(handler)); }, token);
    }

    /// Boots the VM, waits until the agent answers (sandbox_config::ready_timeout), seeds the
    /// guest's RNG and sets its hostname. Then the state is `ready`; on failure `failed`.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_start(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_start(std::move(handler)); }, token);
    }

    /// Runs argv[0] with arguments argv (never through a shell) and collects its output.
    template <boost::asio::completion_token_for<void(error_code, guest_command_result)> Token>
    auto async_exec(std::vector<std::string> argv, guest_exec_options options, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, guest_command_result)>(
            [this](auto handler, std::vector<std::string> a, guest_exec_options o) {
                initiate_exec(std::move(a), std::nullopt, std::move(o), std::move(handler));
            },
            token, std::move(argv), std::move(options));
    }
    /// As above, with default options.
    template <boost::asio::completion_token_for<void(error_code, guest_command_result)> Token>
    auto async_exec(std::vector<std::string> argv, Token&& token) {
        return async_exec(std::move(argv), guest_exec_options(), std::forward<Token>(token));
    }

    /// Runs `command` with /bin/sh -c.
    template <boost::asio::completion_token_for<void(error_code, guest_command_result)> Token>
    auto async_exec_shell(std::string command, guest_exec_options options, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, guest_command_result)>(
            [this](auto handler, std::string c, guest_exec_options o) {
                initiate_exec({}, std::move(c), std::move(o), std::move(handler));
            },
            token, std::move(command), std::move(options));
    }
    /// As above, with default options.
    template <boost::asio::completion_token_for<void(error_code, guest_command_result)> Token>
    auto async_exec_shell(std::string command, Token&& token) {
        return async_exec_shell(std::move(command), guest_exec_options(), std::forward<Token>(token));
    }

    /// Starts argv and hands back its output as a stream of events (see exec_stream.hpp).
    template <boost::asio::completion_token_for<void(error_code, exec_stream)> Token>
    auto async_exec_stream(std::vector<std::string> argv, guest_exec_options options, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, exec_stream)>(
            [this](auto handler, std::vector<std::string> a, guest_exec_options o) {
                initiate_exec_stream(std::move(a), std::move(o), std::move(handler));
            },
            token, std::move(argv), std::move(options));
    }
    /// As above, with default options (stdin closed).
    template <boost::asio::completion_token_for<void(error_code, exec_stream)> Token>
    auto async_exec_stream(std::vector<std::string> argv, Token&& token) {
        return async_exec_stream(std::move(argv), guest_exec_options(), std::forward<Token>(token));
    }

    // ---- files (absolute guest paths; guest_file_errc::invalid_path for anything else)

    /// The whole file. Streamed in 64 KiB frames; the result is held in memory, so past
    /// sandbox_config::max_read_file_bytes it fails with guest_file_errc::file_too_large.
    /// Regular files only: a FIFO, device or socket is guest_file_errc::not_a_regular_file.
    template <boost::asio::completion_token_for<void(error_code, std::string)> Token>
    auto async_read_file(std::string path, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, std::string)>(
            [this](auto handler, std::string p) { initiate_read_file(std::move(p), std::move(handler)); }, token,
            std::move(path));
    }

    /// Replaces (or creates) the file atomically with `data`: written to a temporary file in the
    /// same directory, synced, then renamed over the target, so readers see the old contents or
    /// the new. Symlinks in the last component are followed (the link's target is written, a
    /// dangling link's target created); an existing file keeps its owner and mode, and `mode`
    /// applies to a new file only. Other hard links to a replaced file keep the old contents.
    /// Directories are is_directory; FIFOs, devices and sockets are refused with not_a_regular_file.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_write_file(std::string path, std::string data, std::uint32_t mode, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this, mode](auto handler, std::string p, std::string d) {
                initiate_write_file(std::move(p), std::move(d), mode, std::move(handler));
            },
            token, std::move(path), std::move(data));
    }
    /// As above, mode 0644.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_write_file(std::string path, std::string data, Token&& token) {
        return async_write_file(std::move(path), std::move(data), 0644, std::forward<Token>(token));
    }

    /// Entries other than . and .., unsorted; at most 4096 (more is cut: list a subtree instead).
    template <boost::asio::completion_token_for<void(error_code, std::vector<guest_dir_entry>)> Token>
    auto async_list_dir(std::string path, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, std::vector<guest_dir_entry>)>(
            [this](auto handler, std::string p) { initiate_list_dir(std::move(p), std::move(handler)); }, token,
            std::move(path));
    }

    /// Follows symlinks.
    template <boost::asio::completion_token_for<void(error_code, guest_file_stat)> Token>
    auto async_stat(std::string path, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, guest_file_stat)>(
            [this](auto handler, std::string p) { initiate_stat(std::move(p), std::move(handler)); }, token,
            std::move(path));
    }

    /// true/false; errors other than not_found are reported.
    template <boost::asio::completion_token_for<void(error_code, bool)> Token>
    auto async_exists(std::string path, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, bool)>(
            [this](auto handler, std::string p) { initiate_exists(std::move(p), std::move(handler)); }, token,
            std::move(path));
    }

    /// A file or an empty directory; with options.recursive, a whole tree (symlinks are not followed).
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_remove(std::string path, guest_remove_options options, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this, options](auto handler, std::string p) { initiate_remove(std::move(p), options, std::move(handler)); },
            token, std::move(path));
    }
    /// A file or an empty directory.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_remove(std::string path, Token&& token) {
        return async_remove(std::move(path), guest_remove_options(), std::forward<Token>(token));
    }

    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_rename(std::string from, std::string to, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler, std::string f, std::string t) { initiate_rename(std::move(f), std::move(t), std::move(handler)); },
            token, std::move(from), std::move(to));
    }

    /// With options.parents, like mkdir -p (an existing directory is fine).
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_mkdir(std::string path, guest_mkdir_options options, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this, options](auto handler, std::string p) { initiate_mkdir(std::move(p), options, std::move(handler)); },
            token, std::move(path));
    }
    /// One directory, mode 0755; its parent must exist.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_mkdir(std::string path, Token&& token) {
        return async_mkdir(std::move(path), guest_mkdir_options(), std::forward<Token>(token));
    }

    /// Stops the VM; in-flight operations complete with vm_stopped. State `destroyed`.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_destroy(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_destroy(std::move(handler)); }, token);
    }

private:
    friend struct detail::sandbox_access;
    explicit microvm_sandbox(std::shared_ptr<detail::sandbox_state> state) noexcept : state_(std::move(state)) {}

    template <class... Ts>
    using handler = boost::asio::any_completion_handler<void(error_code, Ts...)>;

    static void initiate_create(executor_type ex, microvm_config vm, sandbox_config config, handler<microvm_sandbox> h);
    static void initiate_restore(executor_type ex, microvm_snapshot snapshot, sandbox_config config, handler<microvm_sandbox> h);
    void initiate_snapshot(handler<microvm_snapshot> h);
    void initiate_fork(std::size_t n, handler<std::vector<microvm_sandbox>> h);
    void initiate_start(handler<> h);
    void initiate_exec(std::vector<std::string> argv, std::optional<std::string> shell, guest_exec_options options,
                       handler<guest_command_result> h);
    void initiate_exec_stream(std::vector<std::string> argv, guest_exec_options options, handler<exec_stream> h);
    void initiate_read_file(std::string path, handler<std::string> h);
    void initiate_write_file(std::string path, std::string data, std::uint32_t mode, handler<> h);
    void initiate_list_dir(std::string path, handler<std::vector<guest_dir_entry>> h);
    void initiate_stat(std::string path, handler<guest_file_stat> h);
    void initiate_exists(std::string path, handler<bool> h);
    void initiate_remove(std::string path, guest_remove_options options, handler<> h);
    void initiate_rename(std::string from, std::string to, handler<> h);
    void initiate_mkdir(std::string path, guest_mkdir_options options, handler<> h);
    void initiate_destroy(handler<> h);

    std::shared_ptr<detail::sandbox_state> state_;
};

}  // namespace mimobox::vm
