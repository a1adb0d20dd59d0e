// mimobox guest agent: the guest's /init. As PID 1 it mounts the pseudo filesystems, names the
// host, starts the vsock server and reaps every orphan. The server listens on vsock port 52 (or,
// with the serial transport, on an AF_UNIX socket that serial_bridge joins to ttyS1) and
// serves each connection (one operation: ping, init, exec, a file operation) in its own process,
// so a misbehaving command cannot stall another operation.
// `mimobox.test=` on the kernel command line hands PID 1 to the test init instead.
#include "exec.hpp"
#include "files.hpp"
#include "serial_bridge.hpp"
#include "wire.hpp"

#include <fcntl.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
#include <new>
#include <string>

using namespace mimobox::agent;
using namespace mimobox::agent::guest;

namespace {

constexpr unsigned agent_port = 52;
constexpr const char* agent_version = "0.2.0";

// Mixes the host's bytes into the pool and credits them, so getrandom() does not block early
// in a fresh VM that has seen almost no interrupts.
int seed_rng(const std::string& entropy) {
    if (entropy.empty()) return 0;
    const int fd = ::open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    std::vector<std::uint8_t> buf(sizeof(rand_pool_info) + entropy.size());
    auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
    info->entropy_count = static_cast<int>(entropy.size() * 8);
    info->buf_size = static_cast<int>(entropy.size());
    std::memcpy(info->buf, entropy.data(), entropy.size());
    const int rc = ::ioctl(fd, RNDADDENTROPY, info);
    const int e = errno;
    ::close(fd);
    errno = e;
    return rc;
}

void serve_connection(int conn) {
    frame_reader reader;
    // Peeked, not read: an exec takes the request off the socket only if its command outlives
    // a short window, so a short command's answer carries no credit update ahead of it
    // (read_request, serve_exec). Every other operation reads it at once: the update then
    // leaves in the answer's kick (measured: a stat that left it queued was no faster).
    auto first = reader.read_request(conn);
    if (!first || first->kind != frame_kind::message) return;
    auto v = parse_message(std::string_view(reinterpret_cast<const char*>(first->body.data()), first->body.size()));
    if (!v) return (void)(reader.consume(conn) && send_answer(conn, error_response{EPROTO, "malformed message"}));
    auto rq = request_from_json(*v);
    const bool is_exec = rq && std::holds_alternative<exec_request>(*rq);
    if (!is_exec && !reader.consume(conn)) return;
    if (!rq) return (void)send_answer(conn, error_response{EPROTO, rq.error().message()});
    if (std::holds_alternative<ping_request>(*rq)) return (void)send_answer(conn, pong_response{agent_version});
    if (auto* i = std::get_if<init_request>(&*rq)) {
        if (seed_rng(i->entropy) != 0) return (void)send_answer(conn, errno_response(errno));
        if (!i->hostname.empty() && ::sethostname(i->hostname.data(), i->hostname.size()) != 0)
            return (void)send_answer(conn, errno_response(errno));
        return (void)send_answer(conn, ok_response{});
    }
    if (auto* e = std::get_if<exec_request>(&*rq)) return serve_exec(conn, *e, reader);
    if (auto* f = std::get_if<file_request>(&*rq)) return serve_file(conn, *f, reader);
    send_answer(conn, error_response{EPROTO, "unexpected request"});
}

// Workers wait in accept() and serve one connection at a time, then go back to waiting. Forking
// costs tens of milliseconds under nested virtualization, so it must stay off the path of a
// request: the server forks only when the idle workers run low (a burst of concurrent
// operations), and a worker that finds enough others idle exits instead of waiting. In steady
// state, one operation after another, nothing forks at all.
struct worker_pool {
    static constexpr int low_water = 2;   // fewer idle than this: fork another
    static constexpr int high_water = 4;  // this many idle: a finished worker exits
    static constexpr int max_served = 1000;  // then exit anyway, so no leak can accumulate
    std::atomic<int> idle{0};
};

[[noreturn]] void run_worker(int listener, int accepted, worker_pool& pool) {
    ::signal(SIGCHLD, SIG_DFL);  // exec waits for its own children
    // What commands inherit, set once here rather than in every child (exec_child): no blocked
    // signals, and "/" as the directory when the request names no other.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::chdir("/") != 0) ::_exit(1);
    // SCHED_BATCH: a wakeup does not preempt the running task. A command that exits closes
    // its pipes (waking us) before it becomes a zombie; preempting it there would cost a
    // round trip through poll for nothing. Commands get SCHED_OTHER back (exec_child).
    sched_param normal{};
    ::sched_setscheduler(0, SCHED_BATCH, &normal);
    // One idle worker woken per connection. A process blocked in a vsock accept() is woken by
    // every new connection (the listener's wait is not exclusive), so each operation woke all
    // the idle workers and all but one went back to sleep: context switches on the guest's
    // CPU right when it should serve the request. Workers wait in epoll with EPOLLEXCLUSIVE
    // instead, which wakes one; the listener is non-blocking (make_listener), so a worker that
    // loses a race just waits again. Without epoll, poll() does the same job, herd included.
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
    for (int served = 0;;) {
        const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) wait_for_connection();
            continue;
        }
        if (pool.idle.fetch_sub(1) - 1 < worker_pool::low_water) {
            const char one = 1;
            [[maybe_unused]] auto n = ::write(accepted, &one, 1);
        }
        serve_connection(c);
        ::close(c);
        bool stay = false;
        int idle = pool.idle.load();
        ++served;
        while (!stay && served < worker_pool::max_served && idle < worker_pool::high_water)
            stay = pool.idle.compare_exchange_weak(idle, idle + 1);
        if (!stay) ::_exit(0);
    }
}

// The agent's listening socket: vsock, or AF_UNIX for the serial bridge. PID 1 creates it once,
// so it outlives server restarts and exists before the bridge accepts anything.
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

[[noreturn]] void serve_forever(int ls) {
    ::signal(SIGPIPE, SIG_IGN);
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);  // exec's PATH search
    // Workers are reaped by the kernel; each resets this before running commands.
    struct sigaction sa{};
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = SA_NOCLDWAIT;
    ::sigaction(SIGCHLD, &sa, nullptr);
    int accepted[2];
    // The idle count lives in memory every worker shares.
    void* shared = ::mmap(nullptr, sizeof(worker_pool), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ls < 0 || shared == MAP_FAILED || ::pipe2(accepted, O_CLOEXEC) != 0) {
        std::printf("MIMOBOX_AGENT=error:%s\n", std::strerror(errno));
        std::fflush(stdout);
        ::_exit(1);
    }
    auto* pool = new (shared) worker_pool;
    auto spawn_worker = [&] {
        // Retried: with no idle worker, connections would wait in the backlog forever.
        for (;;) {
            const pid_t pid = ::fork();
            if (pid == 0) {
                ::close(accepted[0]);
                run_worker(ls, accepted[1], *pool);
            }
            if (pid > 0) return;
            ::usleep(100 * 1000);
        }
    };
    for (int i = 0; i < worker_pool::high_water; ++i) spawn_worker();
    std::printf("MIMOBOX_AGENT=listening port=%u version=%s\n", agent_port, agent_version);
    std::fflush(stdout);
    for (;;) {
        char byte;
        const ssize_t n = ::read(accepted[0], &byte, 1);
        if (n == 1) spawn_worker();  // idle workers ran low
        else if (n < 0 && errno != EINTR) ::sleep(1);
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
    const auto bridge = serial_bridge_from_cmdline(kernel_cmdline(), agent_port);
    const int listener = make_listener(bridge.has_value());
    // PID 1 ignores signals it has no handler for; keep it that way and just reap, restarting
    // the server or the bridge should either exit.
    auto start = [&](bool is_bridge) -> pid_t {
        const pid_t pid = ::fork();
        if (pid != 0) return pid;
        if (!is_bridge) serve_forever(listener);
        ::close(listener);
        const int why = run_serial_bridge(*bridge);
        std::printf("mimobox-agent: serial bridge on %s stopped: %s\n", bridge->tty_path.c_str(), std::strerror(why));
        std::fflush(stdout);
        ::_exit(1);
    };
    pid_t server = start(false);
    pid_t bridge_pid = bridge ? start(true) : -1;
    for (;;) {
        int status = 0;
        const pid_t p = ::wait(&status);
        if (p < 0) {
            if (errno == ECHILD) ::sleep(1);
            continue;
        }
        if (p != server && p != bridge_pid) continue;
        std::printf("mimobox-agent: %s exited (status %d), restarting\n", p == server ? "server" : "serial bridge", status);
        std::fflush(stdout);
        ::sleep(1);
        if (p == server) server = start(false);
        else bridge_pid = start(true);
    }
}

}  // namespace

int main() {
    if (::getpid() == 1) run_as_init();
    serve_forever(make_listener(false));
}
