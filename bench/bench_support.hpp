// Small helpers the benchmarks share: elapsed milliseconds, a median, the process's Pss and threads.
#pragma once

#include <dirent.h>

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <string>
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

/// Pss of the whole process (/proc/self/smaps_rollup), KiB; -1 if unreadable.
inline double pss_kib() {
    std::ifstream f("/proc/self/smaps_rollup");
    std::string key;
    double value = 0;
    while (f >> key) {
        if (key == "Pss:") {
            f >> value;
            return value;
        }
        f.ignore(1 << 20, '\n');
    }
    return -1;
}

/// This process's threads (/proc/self/task).
inline std::size_t threads() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (auto* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

}  // namespace mimobox::bench
