#include "exec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <string>

namespace mimobox::agent::guest {

namespace {

// What the child needs, built before vfork: between vfork and exec the child shares our
// memory, so it may only make system calls (no allocation, no environment edits).
struct child_plan {
    std::vector<std::string> env_strings;
    std::vector<char*> argv, envp;
    const char* cwd;
};

child_plan plan_child(const exec_request& e) {
    child_plan p;
    std::map<std::string, std::string> env{{"PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, {"HOME", "/root"}};
    for (const auto& [k, v] : e.env) env[k] = v;
    for (const auto& [k, v] : env) p.env_strings.push_back(k + "=" + v);
    for (auto& s : p.env_strings) p.envp.push_back(s.data());
    p.envp.push_back(nullptr);
    static char sh[] = "/bin/sh", dash_c[] = "-c";
    if (e.shell) {
        p.argv = {sh, dash_c, const_cast<char*>(e.shell->c_str())};
    } else {
        for (auto& a : e.argv) p.argv.push_back(const_cast<char*>(a.c_str()));
    }
    p.argv.push_back(nullptr);
    p.cwd = e.cwd.c_str();
    return p;
}

void write_text(int fd, const char* a, const char* b = "") {
    [[maybe_unused]] auto n = ::write(fd, a, std::strlen(a));
    n = ::write(fd, b, std::strlen(b));
}

// Runs in the vfork child: system calls only.
[[noreturn]] void exec_child(const child_plan& p, int in_fd, int out_fd, int err_fd) {
    ::setpgid(0, 0);
    sched_param normal{};
    ::sched_setscheduler(0, SCHED_OTHER, &normal);  // the worker runs SCHED_BATCH (main.cpp)
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    ::syscall(SYS_close_range, 3, ~0U, 0);  // ours are close-on-exec anyway; this covers the rest
    // An ignored signal stays ignored across exec. SIGCHLD is already at its default and the
    // signal mask already empty in a worker (run_worker), and its directory is "/": every
    // system call here lies on each command's path, and each costs tens of microseconds
    // under nested emulation.
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    if (std::strcmp(p.cwd, "/") != 0 && ::chdir(p.cwd) != 0) {
        write_text(2, "mimobox-agent: cannot chdir to ", p.cwd);
        write_text(2, "\n");
        ::_exit(126);
    }
    ::execvpe(p.argv[0], p.argv.data(), p.envp.data());  // PATH search uses the agent's own PATH
    const int error = errno;
    write_text(2, "mimobox-agent: cannot execute ", p.argv[0]);
    const char* name = ::strerrorname_np(error);  // a static string: safe here, unlike strerror
    write_text(2, ": ", name ? name : "error");
    write_text(2, "\n");
    ::_exit(error == ENOENT ? 127 : 126);
}

// One output pipe: read what is there, forward it up to the cap, flag what was dropped. At its
// end it stays open until the answer is out (serve_exec closes it), off the command's path.
struct output_pipe {
    int fd;
    frame_kind kind;
    std::uint64_t bytes = 0;
    bool truncated = false;
    bool open = true;

    // Called when poll reported `revents`; open is false once the pipe is done (EOF or error).
    void drain(short revents, int conn, std::uint64_t cap, bool& host_gone) {
        // Hang-up without data: the writers are gone and the pipe is empty, so a read would
        // only return the 0 poll already told us about.
        if ((revents & POLLHUP) && !(revents & POLLIN)) {
            open = false;
            return;
        }
        std::uint8_t buf[max_data_chunk];
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (r <= 0) {
            open = false;
            return;
        }
        std::size_t keep = static_cast<std::size_t>(r);
        if (bytes + keep > cap) {
            keep = bytes >= cap ? 0 : static_cast<std::size_t>(cap - bytes);
            truncated = true;
        }
        bytes += keep;
        // A blocking send: when the host stops reading, vsock credit runs out, this blocks, the
        // pipe fills and the command blocks. That is the end-to-end backpressure.
        if (keep && !host_gone && !send_frame(conn, kind, std::span(buf, keep))) host_gone = true;
    }
};

// stdin for a command the host will not feed: the same EOF a closed pipe gives, without a pipe
// per exec. Opened once per worker; -1 if it cannot be (a pipe is used then).
int null_input() {
    static const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

void close_open(std::initializer_list<int> fds) {
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
}

}  // namespace

void serve_exec(int conn, const exec_request& e, frame_reader& reader) {
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    const int devnull = e.stdin_open ? -1 : null_input();
    if ((devnull < 0 && ::pipe2(in_pipe, O_CLOEXEC)) || ::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC)) {
        const int error = errno;
        close_open({in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]});
        send_answer(conn, errno_response(error));
        return;
    }
    const int child_stdin = devnull >= 0 ? devnull : in_pipe[0];
    const child_plan plan = plan_child(e);
    const std::uint64_t start = monotonic_us();
    // vfork: no copy of our page tables, the cheapest way to start a process (fork costs
    // tens of milliseconds under nested virtualization).
    pid_t pid = ::vfork();
    if (pid == 0) exec_child(plan, child_stdin, out_pipe[1], err_pipe[1]);
    const int vfork_error = errno;
    close_open({in_pipe[0], out_pipe[1], err_pipe[1]});
    if (pid < 0) {
        close_open({in_pipe[1], out_pipe[0], err_pipe[0]});
        send_answer(conn, errno_response(vfork_error));
        return;
    }
    // No setpgid(pid, pid) here: vfork returns only once the child has exec'd (or exited), so
    // its own setpgid already ran and a kill of the group cannot come too early.
    // A pidfd turns "the child exited" into a poll event: no polling interval, no SIGCHLD.
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    int stdin_fd = in_pipe[1];
    if (!e.stdin_open) {
        close_open({stdin_fd});
        stdin_fd = -1;
    } else {
        // Non-blocking, buffered: a child busy writing output must never wedge us in a write
        // to its stdin (it would stop reading, and we would stop draining it).
        ::fcntl(stdin_fd, F_SETFL, ::fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);
    }
    constexpr std::size_t stdin_buffer_limit = 1u << 20;  // stop reading the host beyond this
    std::vector<std::uint8_t> stdin_buf;
    bool stdin_eof_requested = false;
    output_pipe out{out_pipe[0], frame_kind::stdout_data}, err{err_pipe[0], frame_kind::stderr_data};
    bool timed_out = false, killed = false, host_gone = false, reaped = false;
    bool maybe_exited = pidfd < 0;  // without a pidfd, ask waitpid every time round
    int status = 0;
    auto kill_group = [&] {
        if (!killed) ::kill(-pid, SIGKILL);
        killed = true;
    };
    // Frames from the host: stdin data, its end, a kill. Some may have arrived together with
    // the request and already sit in `reader`, so this runs once before the first poll too.
    auto handle_frames = [&] {
        while (auto f = reader.next()) {
            if (f->kind == frame_kind::stdin_data && stdin_fd >= 0) {
                stdin_buf.insert(stdin_buf.end(), f->body.begin(), f->body.end());
            } else if (f->kind == frame_kind::end_of_data) {
                stdin_eof_requested = true;
            } else if (f->kind == frame_kind::message) {
                auto v = parse_message(std::string_view(reinterpret_cast<const char*>(f->body.data()), f->body.size()));
                if (v)
                    if (auto rq = request_from_json(*v); rq && std::holds_alternative<kill_request>(*rq)) kill_group();
            }
            reader.feed({});  // frames behind the one just taken
        }
        if (reader.decoder.error()) kill_group();  // a host speaking garbage is a host gone
    };
    reader.feed({});
    handle_frames();
    const std::uint64_t deadline = e.timeout_ms ? start + e.timeout_ms * 1000 : 0;
    // The request may still sit in the socket (read_request). While it does, poll cannot tell
    // new frames from it, so we watch only for the host hanging up; a command that ends
    // within the window answers without ever reading it, and so without the credit update a
    // read would have sent mid-command. Past the window (or at any event on the connection)
    // the bytes are taken off and the connection watched as usual: a kill frame on a command
    // that runs longer waits at most this long.
    constexpr std::uint64_t request_read_window_us = 20'000;
    auto take_request_off = [&] {
        if (!reader.consume(conn)) {
            host_gone = true;  // reset: that is cancellation
            kill_group();
        }
    };
    if (e.stdin_open) take_request_off();  // stdin frames follow: watch for them from the start
    const std::uint64_t read_request_by = start + request_read_window_us;
    while (out.open || err.open || !reaped) {
        // Before waiting, not after: the end of stdin may have come in the last pass, alone,
        // with nothing left to write. Checked only after poll, it waited for an event that a
        // command blocked reading its stdin never makes (a host writing a line, reading the
        // echo, then closing stdin hung there).
        if (stdin_fd >= 0 && stdin_eof_requested && stdin_buf.empty()) {
            ::close(stdin_fd);
            stdin_fd = -1;
        }
        if (!reaped && maybe_exited && ::waitpid(pid, &status, WNOHANG) == pid) reaped = true;
        if (reaped && !out.open && !err.open) break;
        const bool request_queued = reader.unconsumed > 0 && !host_gone;
        const bool has_deadline = deadline && !killed;
        // Read once per pass, and only compared before subtracting: a difference must not wrap.
        const std::uint64_t now = request_queued || has_deadline ? monotonic_us() : 0;
        int wait_ms = -1;
        auto wait_at_most_until = [&](std::uint64_t t) {
            const int ms = static_cast<int>((t - now + 999) / 1000);
            wait_ms = wait_ms < 0 ? ms : std::min(wait_ms, ms);
        };
        if (request_queued) {
            if (now >= read_request_by) {
                take_request_off();
                continue;
            }
            wait_at_most_until(read_request_by);
        }
        if (has_deadline) {
            if (now >= deadline) {
                timed_out = true;
                kill_group();
            } else {
                wait_at_most_until(deadline);
            }
        }
        if (pidfd < 0 && !reaped && wait_ms < 0) wait_ms = 20;  // no pidfd: fall back to polling
        pollfd fds[5];
        int n = 0;
        int conn_slot = -1, in_slot = -1, out_slot = -1, err_slot = -1;
        if (!host_gone && stdin_buf.size() < stdin_buffer_limit) {
            conn_slot = n;
            fds[n++] = {conn, static_cast<short>(request_queued ? POLLRDHUP : POLLIN), 0};
        }
        if (stdin_fd >= 0 && !stdin_buf.empty()) { in_slot = n; fds[n++] = {stdin_fd, POLLOUT, 0}; }
        if (out.open) { out_slot = n; fds[n++] = {out.fd, POLLIN, 0}; }
        if (err.open) { err_slot = n; fds[n++] = {err.fd, POLLIN, 0}; }
        int pid_slot = -1;
        if (pidfd >= 0 && !reaped) { pid_slot = n; fds[n++] = {pidfd, POLLIN, 0}; }  // wakes the loop, which reaps
        if (::poll(fds, static_cast<nfds_t>(n), wait_ms) < 0 && errno != EINTR) break;
        auto ready = [&](int slot, short events) { return slot >= 0 && (fds[slot].revents & (events | POLLHUP | POLLERR)); };
        if (ready(in_slot, POLLOUT)) {
            ssize_t w = ::write(stdin_fd, stdin_buf.data(), stdin_buf.size());
            if (w > 0) {
                stdin_buf.erase(stdin_buf.begin(), stdin_buf.begin() + w);
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                ::close(stdin_fd);  // the command closed its stdin: drop the rest
                stdin_fd = -1;
                stdin_buf.clear();
            }
        }
        if (ready(pid_slot, POLLIN)) maybe_exited = true;
        if (ready(out_slot, POLLIN)) out.drain(fds[out_slot].revents, conn, e.max_output, host_gone);
        if (ready(err_slot, POLLIN)) err.drain(fds[err_slot].revents, conn, e.max_output, host_gone);
        if (request_queued && conn_slot >= 0 && fds[conn_slot].revents) {
            take_request_off();  // the host hung up (or more came): read on the usual path
        } else if (ready(conn_slot, POLLIN)) {
            std::uint8_t buf[64 * 1024];
            ssize_t r = ::read(conn, buf, sizeof buf);
            if (r <= 0) {
                host_gone = true;  // the host hung up: that is cancellation
                kill_group();
            } else {
                reader.feed(std::span(buf, static_cast<std::size_t>(r)));
                handle_frames();
            }
        }
    }
    if (stdin_fd >= 0) ::close(stdin_fd);
    if (!reaped) ::waitpid(pid, &status, 0);
    // The answer first: closing what is left waits until it is out.
    const auto close_rest = [&] { close_open({out.fd, err.fd, pidfd}); };
    if (host_gone) return close_rest();
    exit_response x;
    if (WIFEXITED(status)) x.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) x.signal = WTERMSIG(status);
    x.timed_out = timed_out;
    x.stdout_truncated = out.truncated;
    x.stderr_truncated = err.truncated;
    x.duration_us = monotonic_us() - start;
    send_answer(conn, x);
    // Linux sends vsock packets from a work item, and CFS does not let that wakeup preempt a
    // worker, so without this the answer waited in the guest for the clean-up below and the
    // worker's return to its wait (0.2-0.4 ms in a harness trace, all of it on the round
    // trip). The clean-up then runs while the host reads the answer.
    ::sched_yield();
    close_rest();
}

}  // namespace mimobox::agent::guest
