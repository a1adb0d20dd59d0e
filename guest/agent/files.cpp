#include "files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

namespace mimobox::agent::guest {

namespace {

file_type type_of(mode_t m) {
    if (S_ISREG(m)) return file_type::regular;
    if (S_ISDIR(m)) return file_type::directory;
    if (S_ISLNK(m)) return file_type::symlink;
    return file_type::other;
}

void send_result(int conn, int rc) {
    if (rc == 0) send_answer(conn, ok_response{});
    else send_answer(conn, errno_response(errno));
}

// What reading or writing something other than a regular file answers (guest_file_errc::
// not_a_regular_file on the host): a FIFO or a device could block the worker or never end.
constexpr int not_a_regular_file = ENXIO;  // the host maps it to guest_file_errc::not_a_regular_file

void serve_read(int conn, const std::string& path) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return send_result(conn, -1);
    struct stat st{};
    int e = 0;
    if (::fstat(fd, &st) != 0) e = errno;
    else if (S_ISDIR(st.st_mode)) e = EISDIR;
    else if (!S_ISREG(st.st_mode)) e = not_a_regular_file;
    else if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) e = errno;
    if (e) {
        ::close(fd);
        return (void)send_answer(conn, errno_response(e));
    }
    std::uint8_t buf[max_data_chunk];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            return (void)send_answer(conn, errno_response(e));  // the host drops the partial data
        }
        if (n == 0) break;
        if (!send_frame(conn, frame_kind::file_data, std::span(buf, static_cast<std::size_t>(n)))) return (void)::close(fd);
    }
    ::close(fd);
    send_answer(conn, ok_response{});
}

// The path a write replaces: symlinks in the last component are followed (a dangling one to the
// file it would create), so a link is written through, like a shell's `>`, instead of being
// replaced by a file. 0 or an errno value.
int resolve_final_component(std::string& path) {
    for (int hops = 0; hops < 40; ++hops) {  // Linux's own limit (ELOOP beyond)
        char target[PATH_MAX];
        const ssize_t n = ::readlink(path.c_str(), target, sizeof target);
        if (n < 0) return errno == EINVAL || errno == ENOENT ? 0 : errno;  // not a link, or nothing there
        if (static_cast<std::size_t>(n) == sizeof target) return ENAMETOOLONG;
        if (target[0] == '/') path.assign(target, static_cast<std::size_t>(n));
        else path = path.substr(0, path.find_last_of('/') + 1) + std::string(target, static_cast<std::size_t>(n));
    }
    return ELOOP;
}

// Atomic: the data goes to a temporary file next to the target, synced and renamed over it only
// once complete, so a reader sees the old file or the new one, and a failed write leaves no
// trace. An existing file keeps its owner and mode (the request's mode is for new files); it is
// replaced, not rewritten in place, so its other hard links keep the old contents.
void serve_write(int conn, const file_request& f, frame_reader& reader) {
    std::string path = f.path;
    struct stat existing{};
    int error = resolve_final_component(path);
    bool exists = false;
    if (!error) {
        exists = ::stat(path.c_str(), &existing) == 0;
        if (!exists && errno != ENOENT) error = errno;
        else if (exists && S_ISDIR(existing.st_mode)) error = EISDIR;
        else if (exists && !S_ISREG(existing.st_mode)) error = not_a_regular_file;
    }
    std::string tmp = path.substr(0, path.find_last_of('/') + 1) + ".mimobox-write-XXXXXX";
    const int fd = error ? -1 : ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0 && !error) error = errno;
    bool complete = false;
    // Read to the end even after an error, so the host's sends finish; the error goes last.
    while (auto fr = reader.read(conn)) {
        if (fr->kind == frame_kind::end_of_data) {
            complete = true;
            break;
        }
        if (fr->kind != frame_kind::file_data) {
            if (!error) error = EPROTO;
            break;
        }
        if (!error && !write_all(fd, fr->body.data(), fr->body.size())) error = errno ? errno : EIO;
    }
    if (!error && !complete) error = EPIPE;  // the host went away mid-file
    // Owner before mode: a chown clears the set-user-ID and set-group-ID bits.
    if (!error && exists && ::fchown(fd, existing.st_uid, existing.st_gid) != 0) error = errno;
    if (!error && ::fchmod(fd, exists ? existing.st_mode & 07777 : f.mode) != 0) error = errno;
    if (!error && ::fsync(fd) != 0) error = errno;  // the data is on disk before the name moves to it
    if (fd >= 0 && ::close(fd) != 0 && !error) error = errno;
    if (!error && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
    if (error) {
        if (fd >= 0) ::unlink(tmp.c_str());
        return (void)send_answer(conn, errno_response(error));
    }
    send_answer(conn, ok_response{});
}

void serve_list(int conn, const std::string& path) {
    DIR* dir = ::opendir(path.c_str());
    if (!dir) return send_result(conn, -1);
    listing_response out;
    // Keeps the reply well inside one frame (names may be base64-encoded: 4/3 larger).
    constexpr std::size_t name_budget = 512 * 1024;
    std::size_t name_bytes = 0;
    while (dirent* e = ::readdir(dir)) {
        const std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        if (out.entries.size() == listing_response::max_entries || name_bytes + name.size() > name_budget) {
            out.truncated = true;
            break;
        }
        struct stat st{};
        dir_entry entry{std::string(name), file_type::other, 0};
        if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            entry.type = type_of(st.st_mode);
            entry.size = static_cast<std::uint64_t>(st.st_size);
        }
        name_bytes += name.size();
        out.entries.push_back(std::move(entry));
    }
    ::closedir(dir);
    send_answer(conn, out);
}

void serve_stat(int conn, const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return send_result(conn, -1);
    stat_response r;
    r.type = type_of(st.st_mode);
    r.size = static_cast<std::uint64_t>(st.st_size);
    r.mode = st.st_mode & 07777;
    r.mtime_ns = std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    send_answer(conn, r);
}

int remove_tree(const std::string& path) {
    // Depth first, never following symlinks: a link to / removes the link, not the system.
    return ::nftw(path.c_str(), [](const char* p, const struct stat*, int, FTW*) { return ::remove(p); }, 16,
                  FTW_DEPTH | FTW_PHYS);
}

int make_dirs(const std::string& path, mode_t mode) {
    for (std::size_t pos = 1;; ++pos) {
        pos = path.find('/', pos);
        const std::string prefix = path.substr(0, pos);
        if (::mkdir(prefix.c_str(), mode) != 0) {
            struct stat st{};
            if (errno != EEXIST) return -1;
            if (::stat(prefix.c_str(), &st) != 0) return -1;
            if (!S_ISDIR(st.st_mode)) return errno = ENOTDIR, -1;
        }
        if (pos == std::string::npos) return 0;
    }
}

}  // namespace

void serve_file(int conn, const file_request& f, frame_reader& reader) {
    using op = file_request::operation;
    switch (f.op) {
    case op::read: return serve_read(conn, f.path);
    case op::write: return serve_write(conn, f, reader);
    case op::list_dir: return serve_list(conn, f.path);
    case op::stat: return serve_stat(conn, f.path);
    case op::remove: return send_result(conn, f.recursive ? remove_tree(f.path) : ::remove(f.path.c_str()));
    case op::rename: return send_result(conn, ::rename(f.path.c_str(), f.target.c_str()));
    case op::mkdir:
        return send_result(conn, f.recursive ? make_dirs(f.path, f.mode) : ::mkdir(f.path.c_str(), f.mode));
    }
}

}  // namespace mimobox::agent::guest
