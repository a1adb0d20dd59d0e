// 02: stream a command's output as it is produced, and feed it stdin while it runs.
//
//   MIMOBOX_VM_ASSETS_DIR=build/guest 02_stream_output
//
// The guest command reads lines from stdin and answers each one; its stdout and stderr arrive
// as separate events, in order, while we keep writing. Nothing is buffered beyond what the
// consumer has asked for: stop calling async_next and the guest command stops too.
#include "example_support.hpp"

#include <iostream>

namespace asio = boost::asio;
using namespace mimobox::vm;
using namespace examples;

asio::awaitable<int> run() {
    sandbox_config options;
    auto opened = co_await open_sandbox(options);
    if (!opened) co_return 1;
    auto& sandbox = *opened;
    guest_exec_options exec_options;
    exec_options.open_stdin = true;
    std::vector<std::string> command;
    command.push_back("sh");
    command.push_back("-c");
    command.push_back("while read n; do echo \"square of $n is $((n * n))\"; echo \"(read $n)\" >&2; done; echo done");
    auto [sec, stream] = co_await sandbox.async_exec_stream(std::move(command), exec_options, use_tuple);
    if (sec) {
        std::cerr << "exec: " << sec.message() << "\n";
        co_return 1;
    }
    for (int n = 1; n <= 5; ++n) co_await stream.async_write_stdin(std::to_string(n) + "\n", use_tuple);
    co_await stream.async_close_stdin(use_tuple);
    for (;;) {
        auto [nec, event] = co_await stream.async_next(use_tuple);
        if (nec) {
            std::cerr << "stream: " << nec.message() << "\n";
            co_return 1;
        }
        switch (event.kind) {
        case stream_event_kind::stdout_data: std::cout << "stdout| " << event.data << std::flush; break;
        case stream_event_kind::stderr_data: std::cout << "stderr| " << event.data << std::flush; break;
        case stream_event_kind::exit:
        case stream_event_kind::timed_out:
            std::cout << "exit code " << event.status.exit_code << "\n";
            co_await sandbox.async_destroy(use_tuple);
            co_return event.status.exit_code;
        }
    }
}

int main() {
    return run_example(run());
}
