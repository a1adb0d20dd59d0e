#include "serial_bridge.hpp"

#include "vsock/muxer.hpp"
#include "vsock/stream_link.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

namespace mimobox::agent::guest {

namespace {

std::string cmdline_value(std::string_view cmdline, std::string_view key) {
    std::size_t at = 0;
    while ((at = cmdline.find(key, at)) != std::string_view::npos) {
        if (at == 0 || cmdline[at - 1] == ' ') {
            const auto begin = at + key.size();
            const auto end = cmdline.find_first_of(" \n", begin);
            return std::string(cmdline.substr(begin, end == std::string_view::npos ? end : end - begin));
        }
        at += key.size();
    }
    return {};
}

// One vsock connection joined to one agent socket.
struct bridged {
    int fd = -1;
    std::vector<std::uint8_t> to_agent;  // taken from the connection, not yet written
    std::size_t to_agent_sent = 0;
    bool agent_done_sending = false;
    bool told_agent_eof = false;
    bool hung_up = false;  // poll reports POLLHUP for good: stop polling unless there is data to read
};

using key = std::pair<std::uint32_t, std::uint32_t>;

bool set_raw(int fd) {
    termios t{};
    if (::tcgetattr(fd, &t) != 0) return false;
    ::cfmakeraw(&t);
    // RTS/CTS: when our tty buffer fills, Linux drops RTS and the host's UART holds its bytes.
    t.c_cflag |= CRTSCTS | CLOCAL | CREAD;
    ::cfsetspeed(&t, B115200);  // any: the emulated UART has no line rate
    return ::tcsetattr(fd, TCSANOW, &t) == 0;
}

}  // namespace

void agent_unix_address(unsigned port, sockaddr_un& addr, socklen_t& length) {
    addr = {};
    addr.sun_family = AF_UNIX;
    const int n = std::snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "mimobox-agent-%u", port);
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

std::optional<serial_bridge_config> serial_bridge_from_cmdline(std::string_view cmdline, unsigned port) {
    const std::string tty = cmdline_value(cmdline, "mimobox.vsock_uart=");
    if (tty.empty() || tty.find('/') != std::string::npos || tty.size() > 32) return std::nullopt;
    serial_bridge_config c;
    c.tty_path = "/dev/" + tty;
    const std::string cid = cmdline_value(cmdline, "mimobox.vsock_cid=");
    if (!cid.empty()) c.cid = std::strtoull(cid.c_str(), nullptr, 10);
    c.port = port;
    agent_unix_address(port, c.target, c.target_length);
    return c;
}

namespace {

int bridge(const serial_bridge_config& config, int tty, std::map<key, bridged>& conns) {
    // Mirrored roles (see vsock::endpoint): the peer is the host, we are config.cid.
    vsock::muxer mux(vsock::host_cid, config.cid);
    mux.listen(config.port);
    // Raw and empty now, so whatever the host sends from here on arrives intact; the SYNC the
    // link starts with tells the host so (see stream_link.hpp).
    ::tcflush(tty, TCIOFLUSH);
    vsock::stream_link link(mux, vsock::stream_link::role::initiator);
    std::vector<std::uint8_t> buf(64 * 1024);

    for (;;) {
        // Connections the host opened: join each to the agent, or refuse with RST.
        while (auto ep = mux.take_accepted(config.port)) {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&config.target), config.target_length) != 0) {
                if (fd >= 0) ::close(fd);
                if (auto* c = mux.find(*ep)) c->reset();
                continue;
            }
            conns[{ep->host_port, ep->guest_port}].fd = fd;
        }
        // Host bytes to the agent, ends of stream both ways, finished connections.
        for (auto it = conns.begin(); it != conns.end();) {
            auto& b = it->second;
            auto* c = mux.find({vsock::host_cid, it->first.first, it->first.second, config.cid});
            for (;;) {
                if (b.to_agent_sent == b.to_agent.size() && c && c->readable() > 0) {
                    b.to_agent.resize(buf.size());
                    b.to_agent.resize(c->read(b.to_agent));
                    b.to_agent_sent = 0;
                }
                if (b.to_agent_sent == b.to_agent.size()) break;
                const ssize_t n = ::write(b.fd, b.to_agent.data() + b.to_agent_sent, b.to_agent.size() - b.to_agent_sent);
                if (n <= 0) {
                    if (n < 0 && errno != EAGAIN && errno != EINTR && c) c->reset();  // the agent is gone
                    break;
                }
                b.to_agent_sent += static_cast<std::size_t>(n);
            }
            const bool drained = b.to_agent_sent == b.to_agent.size() && (!c || c->readable() == 0);
            if (c && drained && c->peer_done_sending() && !b.told_agent_eof) {
                ::shutdown(b.fd, SHUT_WR);
                b.told_agent_eof = true;
            }
            if (!c || c->current_state() == vsock::connection::state::closed) {
                ::close(b.fd);
                it = conns.erase(it);
            } else {
                ++it;
            }
        }
        mux.collect_closed();

        // Wait for the line or an agent socket.
        std::vector<pollfd> fds;
        std::vector<key> owners;
        const bool line_has_output = !link.pending_output().empty();
        fds.push_back({tty, static_cast<short>(POLLIN | (line_has_output ? POLLOUT : 0)), 0});
        for (auto& [k, b] : conns) {
            auto* c = mux.find({vsock::host_cid, k.first, k.second, config.cid});
            short events = 0;
            if (c && !b.agent_done_sending && c->writable() > 0) events |= POLLIN;
            if (b.to_agent_sent < b.to_agent.size() && !b.hung_up) events |= POLLOUT;
            if (b.hung_up && !(events & POLLIN)) continue;  // would wake poll at once, forever
            fds.push_back({b.fd, events, 0});
            owners.push_back(k);
        }
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (fds[0].revents & POLLIN) {
            const ssize_t n = ::read(tty, buf.data(), buf.size());
            if (n > 0) {
                link.feed(std::span(buf.data(), static_cast<std::size_t>(n)));
                if (link.failed()) {
                    std::fprintf(stderr, "mimobox-agent: serial vsock lost framing; connections reset\n");
                    return EPROTO;
                }
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return errno;
            }
        }
        for (std::size_t i = 1; i < fds.size(); ++i) {
            auto* c = mux.find({vsock::host_cid, owners[i - 1].first, owners[i - 1].second, config.cid});
            auto& b = conns[owners[i - 1]];
            if (!c) continue;
            if (fds[i].revents & POLLIN) {
                const ssize_t n = ::read(b.fd, buf.data(), std::min(buf.size(), c->writable()));
                if (n > 0) {
                    c->write(std::span(buf.data(), static_cast<std::size_t>(n)));
                } else if (n == 0) {
                    b.agent_done_sending = true;
                    c->shutdown_write();
                } else if (errno != EAGAIN && errno != EINTR) {
                    c->reset();
                }
            }
            // The agent closed its end completely: close ours once our data is out.
            if (fds[i].revents & (POLLHUP | POLLERR)) {
                b.hung_up = true;
                if (b.agent_done_sending) c->close();
            }
        }
        // Whatever the muxer has for the host, as far as the tty takes it.
        for (;;) {
            const auto out = link.pending_output();
            if (out.empty()) break;
            const ssize_t n = ::write(tty, out.data(), out.size());
            if (n <= 0) {
                if (n < 0 && errno != EAGAIN && errno != EINTR) return errno;
                break;
            }
            link.consume_output(static_cast<std::size_t>(n));
        }
    }
}

}  // namespace

int run_serial_bridge(const serial_bridge_config& config) {
    ::signal(SIGPIPE, SIG_IGN);  // an agent that went away is an EPIPE, handled per connection
    const int tty = ::open(config.tty_path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (tty < 0) return errno;
    // The bridge runs as a thread of PID 1 and is restarted in place: what it opened is closed here.
    std::map<key, bridged> conns;
    const int why = set_raw(tty) ? bridge(config, tty, conns) : errno;
    for (auto& [k, b] : conns) ::close(b.fd);
    ::close(tty);
    return why;
}

}  // namespace mimobox::agent::guest
