// Small helpers the benchmarks share: elapsed milliseconds and a median.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace mimobox::bench {

using clock_type = std::chrono::steady_clock;

inline double ms_since(clock_type::time_point t) { return std::chrono::duration<double, std::milli>(clock_type::now() - t).count(); }

/// The middle value (the upper one of an even count); 0 for none.
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace mimobox::bench
