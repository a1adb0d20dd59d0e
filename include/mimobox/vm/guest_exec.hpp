// Running a command in the guest: options, the collected result, and the events of a stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace mimobox::vm {

struct guest_exec_options {
    // A user-declared constructor makes this a non-aggregate on purpose: GCC 12 miscompiles
    // aggregate initialization of a class with std::string members inside a coroutine (the
    // `{}` in `co_await sb.async_exec(argv, {}, ...)` ended with a bad free), while value
    // initialization through a constructor is compiled correctly. docs/decisions has the record.
    guest_exec_options() = default;

    std::map<std::string, std::string> env;  ///< on top of PATH and HOME
    std::string cwd = "/";
    std::chrono::milliseconds timeout{0};    ///< 0: none. On expiry the process group is killed.
    /// async_exec: written to the command's stdin, then closed. Without it stdin is empty.
    std::optional<std::string> stdin_data;
    /// exec streams: keep stdin open for exec_stream::async_write_stdin.
    bool open_stdin = false;
    /// Per stream; output beyond it is dropped in the guest and the truncated flag set.
    std::uint64_t max_output_bytes = 16u << 20;
};

/// What async_exec collects. The members are not called stdout/stderr because C libraries may
/// define those names as macros.
struct guest_command_result {
    std::string stdout_data;
    std::string stderr_data;
    int exit_code = -1;      ///< -1 when the command was ended by a signal
    int signal = 0;          ///< the terminating signal, 0 if it exited
    bool timed_out = false;  ///< the timeout killed it (exit code 124 from the command is not this)
    bool stdout_truncated = false;
    bool stderr_truncated = false;
    std::chrono::microseconds duration{0};  ///< spawn to exit, measured in the guest
};

enum class stream_event_kind {
    stdout_data,
    stderr_data,
    exit,       ///< the command ended (exit code or signal); the last event
    timed_out,  ///< the timeout killed it; the last event
};

struct stream_event {
    stream_event_kind kind;
    std::string data;  ///< stdout_data / stderr_data
    /// exit / timed_out: exit_code, signal, timed_out, truncation flags and duration.
    guest_command_result status;
};

}  // namespace mimobox::vm
