// Guest-side peer for the exec round-trip benchmark: times fork + exec + wait of a program
// inside the guest, the cost any way of running a command there must pay.
//   mimobox-spawn-bench RUNS [PROGRAM]      prints {"runs":N,"median_us":M,"first_us":F}
// The first spawn is also reported alone: it comes right after the agent started us, as an
// exec's spawn does, while the rest run back to back with every cache warm.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::atoi(argv[1]) : 100;
    const char* program = argc > 2 ? argv[2] : "true";
    std::vector<double> us;
    for (int i = 0; i < runs; ++i) {
        timespec a{}, b{};
        ::clock_gettime(CLOCK_MONOTONIC, &a);
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::execlp(program, program, static_cast<char*>(nullptr));
            ::_exit(127);
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        ::clock_gettime(CLOCK_MONOTONIC, &b);
        us.push_back((b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3);
    }
    const double first = us.empty() ? 0.0 : us.front();
    std::sort(us.begin(), us.end());
    std::printf("{\"runs\":%d,\"median_us\":%.1f,\"first_us\":%.1f}\n", runs, us.empty() ? 0.0 : us[us.size() / 2], first);
}
