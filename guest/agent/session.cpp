#include "session.hpp"

#include "exec.hpp"
#include "files.hpp"
#include "wire.hpp"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace mimobox::agent::guest {

namespace {

// Mixes the host's bytes into the pool and credits them, so getrandom() does not block early
// in a fresh VM that has seen almost no interrupts.
int seed_rng_ioctl(const std::string& entropy) {
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

// The entropy just added reaches the CRNG now rather than at its next scheduled reseed.
int reseed_crng() {
    const int fd = ::open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    const int rc = ::ioctl(fd, RNDRESEEDCRNG);
    const int e = errno;
    ::close(fd);
    errno = e;
    return rc;
}

int set_realtime(std::int64_t ns) {
    const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    return ::clock_settime(CLOCK_REALTIME, &ts);
}

}  // namespace

void serve_connection(int conn, const guest_system& sys) {
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
        if (sys.seed_rng(i->entropy) != 0) return (void)send_answer(conn, errno_response(errno));
        if (i->force_reseed && sys.reseed_rng && sys.reseed_rng() != 0) return (void)send_answer(conn, errno_response(errno));
        if (i->wall_clock_ns != 0 && sys.set_wall_clock && sys.set_wall_clock(i->wall_clock_ns) != 0)
            return (void)send_answer(conn, errno_response(errno));
        if (!i->hostname.empty() && sys.set_hostname(i->hostname) != 0)
            return (void)send_answer(conn, errno_response(errno));
        return (void)send_answer(conn, ok_response{});
    }
    if (auto* e = std::get_if<exec_request>(&*rq)) return serve_exec(conn, *e, reader);
    if (auto* f = std::get_if<file_request>(&*rq)) return serve_file(conn, *f, reader);
    send_answer(conn, error_response{EPROTO, "unexpected request"});
}


const guest_system& guest_system::real() {
    static const guest_system sys{seed_rng_ioctl,
                                  [](const std::string& name) { return ::sethostname(name.data(), name.size()); },
                                  reseed_crng, set_realtime};
    return sys;
}

}  // namespace mimobox::agent::guest
