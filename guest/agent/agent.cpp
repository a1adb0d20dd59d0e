// mimobox guest agent: listens on vsock port 52; one connection per operation (ping, exec).
// Static binary. Each connection is served by its own process, so a misbehaving command cannot
// stall another operation. For exec it streams stdout/stderr as produced, forwards stdin, kills
// the whole process group on timeout, kill request or a host that hangs up.
#include "agent/frame.hpp"
#include "agent/messages.hpp"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace mimobox::agent;

namespace {

constexpr unsigned agent_port = 52;
constexpr const char* agent_version = "0.1.0";

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool send_frame(int fd, frame_kind kind, std::span<const std::uint8_t> body) {
    std::vector<std::uint8_t> out;
    encode_frame(out, kind, body);
    return write_all(fd, out.data(), out.size());
}

bool send_message(int fd, const response& r) {
    auto text = serialize(to_json(r));
    return send_frame(fd, frame_kind::message, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// Reads until one frame is complete (blocking). nullopt on EOF or a protocol error.
std::optional<frame> read_frame(int fd, frame_decoder& d, std::vector<std::uint8_t>& pending) {
    for (;;) {
        if (auto f = d.next()) return f;
        if (!pending.empty()) {
            auto used = d.feed(pending);
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
            if (d.error()) return std::nullopt;
            continue;
        }
        std::uint8_t buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        pending.assign(buf, buf + n);
    }
}

std::uint64_t now_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000 + std::uint64_t(ts.tv_nsec) / 1000;
}

[[noreturn]] void exec_child(const exec_request& e, int in_fd, int out_fd, int err_fd) {
    ::setpgid(0, 0);
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    ::signal(SIGPIPE, SIG_DFL);
    ::clearenv();
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);
    ::setenv("HOME", "/root", 1);
    for (auto& [k, v] : e.env) ::setenv(k.c_str(), v.c_str(), 1);
    if (::chdir(e.cwd.c_str()) != 0) {
        std::fprintf(stderr, "mimobox-agent: chdir %s: %s\n", e.cwd.c_str(), std::strerror(errno));
        ::_exit(126);
    }
    if (e.shell) {
        ::execl("/bin/sh", "sh", "-c", e.shell->c_str(), static_cast<char*>(nullptr));
    } else {
        std::vector<char*> argv;
        for (auto& a : e.argv) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execvp(argv[0], argv.data());
    }
    ::_exit(errno == ENOENT ? 127 : 126);
}

void serve_exec(int conn, const exec_request& e, frame_decoder& decoder, std::vector<std::uint8_t>& pending) {
    int in_pipe[2], out_pipe[2], err_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) || ::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC)) {
        send_message(conn, error_response{errno, std::strerror(errno)});
        return;
    }
    const std::uint64_t start = now_us();
    pid_t pid = ::fork();
    if (pid == 0) exec_child(e, in_pipe[0], out_pipe[1], err_pipe[1]);
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (pid < 0) {
        send_message(conn, error_response{errno, std::strerror(errno)});
        return;
    }
    ::setpgid(pid, pid);  // both sides set it: no race with an early kill
    int stdin_fd = in_pipe[1];
    if (!e.stdin_open) {
        ::close(stdin_fd);
        stdin_fd = -1;
    } else {
        // Non-blocking, buffered: a child that is busy writing output must never be able to
        // wedge us in a write to its stdin (it would stop reading, and we would stop draining).
        ::fcntl(stdin_fd, F_SETFL, ::fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);
    }
    bool stdin_eof_requested = false;
    constexpr std::size_t stdin_buffer_limit = 1u << 20;  // stop reading the host beyond this
    int out_fd = out_pipe[0], err_fd = err_pipe[0];
    std::uint64_t out_bytes = 0, err_bytes = 0;
    bool out_trunc = false, err_trunc = false, timed_out = false, killed = false, host_gone = false;
    int status = 0;
    bool reaped = false;
    std::vector<std::uint8_t> stdin_buf;
    auto kill_group = [&] {
        if (!killed) ::kill(-pid, SIGKILL);
        killed = true;
    };
    while (out_fd >= 0 || err_fd >= 0 || !reaped) {
        if (!reaped && ::waitpid(pid, &status, WNOHANG) == pid) reaped = true;
        if (reaped && out_fd < 0 && err_fd < 0) break;
        if (e.timeout_ms && !killed && now_us() - start > e.timeout_ms * 1000) {
            timed_out = true;
            kill_group();
        }
        pollfd fds[4];
        int n = 0;
        int conn_slot = -1, out_slot = -1, err_slot = -1, in_slot = -1;
        if (!host_gone && stdin_buf.size() < stdin_buffer_limit) { conn_slot = n; fds[n++] = {conn, POLLIN, 0}; }
        if (stdin_fd >= 0 && !stdin_buf.empty()) { in_slot = n; fds[n++] = {stdin_fd, POLLOUT, 0}; }
        if (out_fd >= 0) { out_slot = n; fds[n++] = {out_fd, POLLIN, 0}; }
        if (err_fd >= 0) { err_slot = n; fds[n++] = {err_fd, POLLIN, 0}; }
        ::poll(fds, static_cast<nfds_t>(n), 20);
        auto pump = [&](int& fd, int slot, frame_kind kind, std::uint64_t& count, bool& trunc) {
            if (slot < 0 || !(fds[slot].revents & (POLLIN | POLLHUP | POLLERR))) return;
            std::uint8_t buf[max_data_chunk];
            ssize_t r = ::read(fd, buf, sizeof buf);
            if (r <= 0) {
                ::close(fd);
                fd = -1;
                return;
            }
            std::size_t keep = static_cast<std::size_t>(r);
            if (count + keep > e.max_output) {
                keep = count >= e.max_output ? 0 : static_cast<std::size_t>(e.max_output - count);
                trunc = true;
            }
            count += keep;
            if (keep && !send_frame(conn, kind, std::span(buf, keep))) host_gone = true;
        };
        if (in_slot >= 0 && (fds[in_slot].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = ::write(stdin_fd, stdin_buf.data(), stdin_buf.size());
            if (w > 0) stdin_buf.erase(stdin_buf.begin(), stdin_buf.begin() + w);
            else if (w < 0 && errno != EAGAIN && errno != EINTR) { ::close(stdin_fd); stdin_fd = -1; stdin_buf.clear(); }
        }
        if (stdin_fd >= 0 && stdin_eof_requested && stdin_buf.empty()) {
            ::close(stdin_fd);
            stdin_fd = -1;
        }
        pump(out_fd, out_slot, frame_kind::stdout_data, out_bytes, out_trunc);
        pump(err_fd, err_slot, frame_kind::stderr_data, err_bytes, err_trunc);
        if (conn_slot >= 0 && (fds[conn_slot].revents & (POLLIN | POLLHUP | POLLERR))) {
            std::uint8_t buf[4096];
            ssize_t r = ::read(conn, buf, sizeof buf);
            if (r <= 0) {
                host_gone = true;  // the host hung up: cancellation
                kill_group();
            } else {
                pending.insert(pending.end(), buf, buf + r);
                while (!pending.empty() && !decoder.error()) {
                    auto used = decoder.feed(pending);
                    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
                    while (auto f = decoder.next()) {
                        if (f->kind == frame_kind::stdin_data && stdin_fd >= 0) {
                            stdin_buf.insert(stdin_buf.end(), f->body.begin(), f->body.end());
                        } else if (f->kind == frame_kind::end_of_data) {
                            stdin_eof_requested = true;
                        } else if (f->kind == frame_kind::message) {
                            auto v = parse_message(std::string_view(reinterpret_cast<const char*>(f->body.data()), f->body.size()));
                            if (v) if (auto rq = request_from_json(*v); rq && std::holds_alternative<kill_request>(*rq)) kill_group();
                        }
                    }
                    if (used == 0) break;
                }
                if (decoder.error()) kill_group();
            }
        }
    }
    if (stdin_fd >= 0) ::close(stdin_fd);
    if (!reaped) ::waitpid(pid, &status, 0);
    if (host_gone) return;
    exit_response x;
    if (WIFEXITED(status)) x.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) x.signal = WTERMSIG(status);
    x.timed_out = timed_out;
    x.stdout_truncated = out_trunc;
    x.stderr_truncated = err_trunc;
    x.duration_us = now_us() - start;
    send_message(conn, x);
}

void serve(int conn) {
    frame_decoder decoder;
    std::vector<std::uint8_t> pending;
    auto first = read_frame(conn, decoder, pending);
    if (!first || first->kind != frame_kind::message) return;
    auto v = parse_message(std::string_view(reinterpret_cast<const char*>(first->body.data()), first->body.size()));
    if (!v) return (void)send_message(conn, error_response{EPROTO, "malformed message"});
    auto rq = request_from_json(*v);
    if (!rq) return (void)send_message(conn, error_response{EPROTO, rq.error().message()});
    if (std::holds_alternative<ping_request>(*rq)) return (void)send_message(conn, pong_response{agent_version});
    if (auto* e = std::get_if<exec_request>(&*rq)) return serve_exec(conn, *e, decoder, pending);
}

}  // namespace

int main() {
    ::signal(SIGPIPE, SIG_IGN);
    int ls = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = agent_port;
    if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(ls, 128) != 0) {
        std::printf("MIMOBOX_AGENT=error:%s\n", std::strerror(errno));
        return 1;
    }
    std::printf("MIMOBOX_AGENT=listening port=%u version=%s\n", agent_port, agent_version);
    std::fflush(stdout);
    for (;;) {
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        if (::fork() == 0) {
            ::close(ls);
            serve(c);
            ::close(c);
            ::_exit(0);
        }
        ::close(c);
    }
}
