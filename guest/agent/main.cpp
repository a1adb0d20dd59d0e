// mimobox guest agent: the guest's /init. As PID 1 it mounts the pseudo filesystems, names the
// host, serves the agent protocol and reaps every orphan. It listens on vsock port 52 (or, with
// the serial transport, on an AF_UNIX socket that the serial bridge joins to ttyS1) and serves
// each connection (one operation: ping, init, exec, a file operation) in its own worker thread,
// so a misbehaving command cannot stall another operation.
//
// Everything runs as threads of PID 1, never as separate processes: commands run as root, and
// `kill -9 -1` (common in clean-up scripts) kills every process but init and the caller. The
// kernel drops signals from inside the PID namespace that init has no handler for (SIGKILL and
// SIGSTOP included), and threads belong to init's thread group, so no command can kill a worker,
// the serial bridge or the reaper, and the current and next operations survive it.
//  - Workers: a pool of threads waiting in accept (see worker_pool); threads are also cheaper
//    than processes under emulation (a pipe round trip took 15 us between threads, 82 us
//    between processes).
//  - Commands: started by the worker with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), waited
//    for through the pidfd. They are children of PID 1 like the orphans, so the reaper must not
//    take their exit status from the worker: exec.cpp registers each command's pid (under a
//    lock that the reaper takes exclusively, so none is reaped before it is registered) and the
//    reaper posts a registered child's status instead of dropping it; whichever of the two
//    reaps first, the worker gets it. (Exit signal 0 would hide them from a plain wait(), but
//    exec resets it to SIGCHLD.)
//  - Reaper (the main thread): SIGCHLD is blocked in every thread and taken with sigwaitinfo,
//    then reap_children() reaps every zombie child.
//  - What commands inherit is reset in the child between clone and exec: empty signal mask
//    (the agent blocks SIGCHLD), SIGPIPE at its default (the agent ignores it), SCHED_OTHER
//    (workers run SCHED_BATCH), the cwd of the request ("/" otherwise, the agent's own).
// The price: a crash in the agent is a crash of init (a kernel panic), where a worker process
// used to die alone.
// `mimobox.test=` on the kernel command line hands PID 1 to the test init instead.
#include "exec.hpp"
#include "files.hpp"
#include "serial_bridge.hpp"
#include "session.hpp"
#include "wire.hpp"

#include <fcntl.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

using namespace mimobox::agent;
using namespace mimobox::agent::guest;

namespace {

constexpr unsigned agent_port = 52;

// Workers wait in accept() and serve one connection at a time, then go back to waiting. New
// threads are started off the path of a request: a worker that leaves fewer than low_water idle
// asks the pool's starter thread for another, and a worker that finds high_water others idle
// exits instead of waiting. In steady state, one operation after another, nothing is created.
struct worker_pool {
    static constexpr int low_water = 2;   // fewer idle than this: start another
    static constexpr int high_water = 4;  // this many idle: a finished worker exits
    int listener = -1;
    int start_requests[2] = {-1, -1};     // a byte per worker wanted
    std::atomic<int> idle{0};
};

void run_worker(worker_pool& pool) {
    // SCHED_BATCH (per thread): a wakeup does not preempt the running task. A command that exits
    // closes its pipes (waking us) before it becomes a zombie; preempting it there would cost a
    // round trip through poll for nothing. Commands get SCHED_OTHER back (exec.cpp).
    sched_param normal{};
    ::sched_setscheduler(0, SCHED_BATCH, &normal);
    // One idle worker woken per connection. A task blocked in a vsock accept() is woken by
    // every new connection (the listener's wait is not exclusive), so each operation woke all
    // the idle workers and all but one went back to sleep: context switches on the guest's
    // CPU right when it should serve the request. Workers wait in their own epoll with
    // EPOLLEXCLUSIVE instead, which wakes one; the listener is non-blocking (make_listener), so
    // a worker that loses a race just waits again. Without epoll, poll() does the same job.
    const int listener = pool.listener;
    const int waiter = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event interest{};
    interest.events = EPOLLIN | EPOLLEXCLUSIVE;
    const bool exclusive = waiter >= 0 && ::epoll_ctl(waiter, EPOLL_CTL_ADD, listener, &interest) == 0;
    auto wait_for_connection = [&] {
        epoll_event ready{};
        pollfd pfd{listener, POLLIN, 0};
        if (exclusive) ::epoll_wait(waiter, &ready, 1, -1);
        else ::poll(&pfd, 1, -1);
    };
    pool.idle.fetch_add(1);
    for (;;) {
        const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) wait_for_connection();
            continue;
        }
        if (pool.idle.fetch_sub(1) - 1 < worker_pool::low_water) {
            const char one = 1;
            [[maybe_unused]] auto n = ::write(pool.start_requests[1], &one, 1);
        }
        serve_connection(c, guest_system::real());
        ::close(c);
        bool stay = false;
        int idle = pool.idle.load();
        while (!stay && idle < worker_pool::high_water) stay = pool.idle.compare_exchange_weak(idle, idle + 1);
        if (!stay) break;
    }
    if (waiter >= 0) ::close(waiter);
}

// Detached, with a stack sized for serve_exec's buffers (a few 64 KiB arrays), not the 8 MiB
// default: a burst of a hundred operations starts a hundred workers in a small guest.
// Retried: without it, a connection could wait in the backlog with no worker to take it.
void start_thread(void* (*body)(void*), void* arg) {
    pthread_attr_t attr;
    ::pthread_attr_init(&attr);
    ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    ::pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_t t;
    while (::pthread_create(&t, &attr, body, arg) != 0) ::usleep(100 * 1000);
    ::pthread_attr_destroy(&attr);
}

void* worker_main(void* pool) {
    run_worker(*static_cast<worker_pool*>(pool));
    return nullptr;
}

void* starter_main(void* arg) {
    auto& pool = *static_cast<worker_pool*>(arg);
    for (;;) {
        char byte;
        const ssize_t n = ::read(pool.start_requests[0], &byte, 1);
        if (n == 1) start_thread(worker_main, &pool);  // idle workers ran low
        else if (n < 0 && errno != EINTR) ::sleep(1);
    }
}

void* bridge_main(void* arg) {
    const auto& config = *static_cast<const serial_bridge_config*>(arg);
    for (;;) {  // a thread of PID 1 like the workers, so that kill -9 -1 cannot stop it
        const int why = run_serial_bridge(config);
        std::printf("mimobox-agent: serial bridge on %s stopped: %s; restarting\n", config.tty_path.c_str(), std::strerror(why));
        std::fflush(stdout);
        ::sleep(1);
    }
}

// The agent's listening socket: vsock, or AF_UNIX for the serial bridge.
int make_listener(bool for_serial_bridge) {
    int ls = -1;
    if (for_serial_bridge) {
        sockaddr_un addr{};
        socklen_t length = 0;
        agent_unix_address(agent_port, addr, length);
        ls = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ls >= 0 && ::bind(ls, reinterpret_cast<sockaddr*>(&addr), length) != 0) return -1;
    } else {
        sockaddr_vm addr{};
        addr.svm_family = AF_VSOCK;
        addr.svm_cid = VMADDR_CID_ANY;
        addr.svm_port = agent_port;
        ls = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ls >= 0 && ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
    }
    // Non-blocking: workers wait for connections in epoll and may lose a race for one (run_worker).
    if (ls < 0 || ::listen(ls, 256) != 0 || ::fcntl(ls, F_SETFL, ::fcntl(ls, F_GETFL) | O_NONBLOCK) != 0) return -1;
    return ls;
}

// Starts the workers (and the bridge), then reaps orphans forever on this thread.
[[noreturn]] void serve_forever(const std::optional<serial_bridge_config>& bridge) {
    // Process-wide, so before any thread: sockets report EPIPE instead, and exec's PATH search
    // reads the agent's own PATH (never changed again, so getenv in a child is safe).
    ::signal(SIGPIPE, SIG_IGN);
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);
    // Blocked here, so in every thread created from now on; the reaper takes it with sigwaitinfo
    // and commands unblock it before exec (exec.cpp).
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::pthread_sigmask(SIG_BLOCK, &chld, nullptr);
    static worker_pool pool;
    // Retried, not fatal: PID 1 exiting is a kernel panic, and the host reports a guest that
    // never answers as such.
    while ((pool.listener = make_listener(bridge.has_value())) < 0 || ::pipe2(pool.start_requests, O_CLOEXEC) != 0) {
        std::printf("MIMOBOX_AGENT=error:%s\n", std::strerror(errno));
        std::fflush(stdout);
        if (pool.listener >= 0) ::close(pool.listener);
        ::sleep(1);
    }
    enable_exec_cgroups();
    start_thread(starter_main, &pool);
    for (int i = 0; i < worker_pool::high_water; ++i) start_thread(worker_main, &pool);
    static std::optional<serial_bridge_config> bridge_config;
    if (bridge) {
        bridge_config = bridge;
        start_thread(bridge_main, &*bridge_config);
    }
    std::printf("MIMOBOX_AGENT=listening port=%u version=%s\n", agent_port, agent_version);
    std::fflush(stdout);
    for (;;) {
        reap_children();  // commands' statuses are kept for their workers
        siginfo_t info;
        ::sigwaitinfo(&chld, &info);
    }
}

std::string kernel_cmdline() {
    std::ifstream f("/proc/cmdline");
    return std::string(std::istreambuf_iterator<char>(f), {});
}

[[noreturn]] void run_as_init() {
    // Errors are ignored: a kernel without one of these still runs commands.
    ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    if (kernel_cmdline().find("mimobox.test=") != std::string::npos) {
        ::execl("/sbin/mimobox-test-init", "init", static_cast<char*>(nullptr));
        std::printf("mimobox-agent: cannot run the test init: %s\n", std::strerror(errno));
    }
    ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr);
    // The initramfs has no /dev/console node, so the kernel started us without stdio: take the
    // console now, so our messages (and those of commands' daemons) reach the serial log.
    if (::fcntl(1, F_GETFD) < 0) {
        const int console = ::open("/dev/console", O_RDWR | O_NOCTTY);
        if (console >= 0) {
            for (int fd = 0; fd < 3; ++fd) ::dup2(console, fd);
            if (console > 2) ::close(console);
        }
    }
    ::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    ::mkdir("/dev/pts", 0755);
    ::mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, nullptr);
    ::sethostname("mimobox", 7);
    // cgroup v2 for exec's per-command cgroups (exec.cpp); without it exec falls back to
    // killing the process group.
    // favordynmods: moving a process between cgroups (once per exec) then skips an RCU grace period.
    if (::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods") != 0)
        ::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    serve_forever(serial_bridge_from_cmdline(kernel_cmdline(), agent_port));
}

}  // namespace

int main() {
    if (::getpid() == 1) run_as_init();
    serve_forever(std::nullopt);
}
