// The clock of the vsock host's timers (stall, lost- and owed-interrupt watches, closing
// connections): steady_clock, unless a unit test has frozen it, after which it moves only when
// the test advances it. The timer tests then say "the watch has not fired at half its delay"
// without depending on how fast a loaded machine runs them.
#pragma once

#include <boost/asio/basic_waitable_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>

namespace mimobox::vmm {

struct vsock_clock {
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    // The same epoch as steady_clock, so its time points are steady_clock's (the muxer's
    // deadlines use those).
    using time_point = std::chrono::steady_clock::time_point;
    static constexpr bool is_steady = true;

    static time_point now() noexcept {
        const rep frozen = frozen_at_.load(std::memory_order_relaxed);
        return frozen ? time_point(duration(frozen)) : std::chrono::steady_clock::now();
    }
    static bool frozen() noexcept { return frozen_at_.load(std::memory_order_relaxed) != 0; }

    // ---- tests only
    /// Stops the clock at its current reading.
    static void freeze() noexcept { frozen_at_.store(std::chrono::steady_clock::now().time_since_epoch().count()); }
    static void advance(duration d) noexcept { frozen_at_.fetch_add(d.count()); }
    static void thaw() noexcept { frozen_at_.store(0); }

private:
    static inline std::atomic<rep> frozen_at_{0};  // 0: running
};

/// While the clock is frozen, Asio re-checks pending timers every millisecond of real time (it
/// cannot know when a test advances the clock); otherwise it waits the whole interval.
struct vsock_wait_traits {
    static vsock_clock::duration to_wait_duration(const vsock_clock::duration& d) {
        return vsock_clock::frozen() ? std::min<vsock_clock::duration>(d, std::chrono::milliseconds(1)) : d;
    }
    static vsock_clock::duration to_wait_duration(const vsock_clock::time_point& t) {
        const auto now = vsock_clock::now();
        if (t <= now) return vsock_clock::duration::zero();
        return to_wait_duration(vsock_clock::duration(t - now));
    }
};

using vsock_timer = boost::asio::basic_waitable_timer<vsock_clock, vsock_wait_traits>;

}  // namespace mimobox::vmm
