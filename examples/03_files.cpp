// 03: move files in and out: write a script, run it, read what it wrote, list a directory, and
// see a typed error for a file that is not there.
//
//   MIMOBOX_VM_ASSETS_DIR=build/guest 03_files
#include <mimobox/vm/error.hpp>
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
    auto [mec] = co_await sandbox.async_mkdir("/work/out", {.parents = true}, use_tuple);
    auto [wec] = co_await sandbox.async_write_file("/work/job.sh", "#!/bin/sh\nls / > /work/out/listing.txt\necho wrote it\n",
                                                   0755, use_tuple);
    if (mec || wec) {
        std::cerr << "setup: " << (mec ? mec : wec).message() << "\n";
        co_return 1;
    }
    std::vector<std::string> command;
    command.push_back("/work/job.sh");
    guest_exec_options exec_options;
    auto [xec, result] = co_await sandbox.async_exec(std::move(command), exec_options, use_tuple);
    std::cout << "job said: " << result.stdout_data;
    auto [rec, listing] = co_await sandbox.async_read_file("/work/out/listing.txt", use_tuple);
    std::cout << "the guest's / holds:\n" << listing;
    auto [lec, entries] = co_await sandbox.async_list_dir("/work", use_tuple);
    for (const auto& e : entries)
        std::cout << "/work/" << e.name << (e.type == guest_file_type::directory ? "/" : "") << " " << e.size << " bytes\n";
    auto [nec, nothing] = co_await sandbox.async_read_file("/work/missing", use_tuple);
    std::cout << "reading /work/missing: " << nec.message() << (nec == guest_file_errc::not_found ? " (not_found)" : "")
              << "\n";
    co_await sandbox.async_destroy(use_tuple);
    co_return (xec || rec || lec || nec != guest_file_errc::not_found) ? 1 : 0;
}

int main() {
    return run_example(run());
}
