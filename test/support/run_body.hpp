// Helpers the sandbox unit tests share: running a test body on an io_context with a deadline,
// and a shell command line.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <exception>
#include <string>
#include <vector>

namespace mimobox::test {

/// Runs `body` (an awaitable) to completion on `ctx`, and no further; fails the test if it
/// does not finish within `limit`, and rethrows what it threw.
template <class Body>
void run_body(boost::asio::io_context& ctx, Body body, std::chrono::seconds limit = std::chrono::seconds(60)) {
    bool done = false;
    std::exception_ptr failure;
    boost::asio::co_spawn(ctx, std::move(body), [&](std::exception_ptr ep) {
        done = true;
        failure = ep;
        ctx.stop();  // background work (a pool's maintenance timer) would keep run_for going
    });
    ctx.restart();
    ctx.run_for(limit);
    BOOST_REQUIRE_MESSAGE(done, "the test body did not finish");
    if (failure) std::rethrow_exception(failure);
}

/// `/bin/sh -c command` (outside coroutines: GCC 12 cannot build a braced list of strings in one).
inline std::vector<std::string> shell(const std::string& command) {
    std::vector<std::string> argv{"/bin/sh", "-c", command};
    return argv;
}

}  // namespace mimobox::test
