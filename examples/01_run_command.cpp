// 01: run one command in a fresh microVM and print what it printed.
//
//   MIMOBOX_VM_ASSETS_DIR=build/guest 01_run_command [COMMAND [ARGS...]]     (default: uname -a)
//
// The kernel and initramfs come from the assets directory (checked against their .sha256
// sidecars). The exit status is the command's.
#include "example_support.hpp"

#include <iostream>

namespace asio = boost::asio;
using namespace mimobox::vm;
using namespace examples;

asio::awaitable<int> run(std::vector<std::string> command) {
    sandbox_config options;
    auto opened = co_await open_sandbox(options);
    if (!opened) co_return 1;
    auto& sandbox = *opened;
    guest_exec_options exec_options;
    auto [xec, result] = co_await sandbox.async_exec(std::move(command), exec_options, use_tuple);
    if (xec) {
        std::cerr << "exec: " << xec.message() << "\n";
        co_return 1;
    }
    std::cout << result.stdout_data;
    std::cerr << result.stderr_data;
    std::cerr << "[exit " << result.exit_code << (result.signal ? ", signal " + std::to_string(result.signal) : "")
              << ", " << result.duration.count() << " us in the guest]\n";
    co_await sandbox.async_destroy(use_tuple);
    co_return result.signal ? 128 + result.signal : result.exit_code;
}

int main(int argc, char** argv) {
    std::vector<std::string> command(argv + 1, argv + argc);
    if (command.empty()) command = {"uname", "-a"};
    return run_example(run(std::move(command)));
}
