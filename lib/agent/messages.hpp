// The JSON messages of the guest agent protocol (carried in `message` frames, see frame.hpp),
// shared by the host library and the guest agent. Every message has "v" (protocol_version).
// Byte strings (argv, env, cwd, paths, shell) may hold any bytes: valid UTF-8 travels as a JSON
// string, anything else as {"base64": "..."}, so nothing is lost or mangled.
#pragma once

#include "agent/agent_errc.hpp"
#include "agent/frame.hpp"  // protocol_version

#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace mimobox::agent {

struct ping_request {};

/// Longest exec timeout either side accepts (30 days); more is malformed, and would overflow
/// the microseconds the guest counts in.
inline constexpr std::uint64_t max_timeout_ms = 30ull * 24 * 3600 * 1000;
/// Longest error message kept from the guest; the rest is cut.
inline constexpr std::size_t max_error_message = 4096;
/// Longest directory entry name (NAME_MAX).
inline constexpr std::size_t max_entry_name = 255;

struct exec_request {
    std::vector<std::string> argv;       ///< run directly (never shell-joined), or:
    std::optional<std::string> shell;    ///< run by /bin/sh -c
    std::map<std::string, std::string> env;
    std::string cwd = "/";
    std::uint64_t timeout_ms = 0;        ///< 0: none; at most max_timeout_ms
    bool stdin_open = false;             ///< the host sends stdin frames, then end_of_data
    std::uint64_t max_output = 64u << 20;  ///< per stream; beyond it output is dropped and flagged
};

struct kill_request {};  ///< mid-exec: kill the process group
/// Sent once by the host when the sandbox becomes ready.
struct init_request {
    std::string entropy;   ///< mixed into the guest's RNG (credited), up to 512 bytes
    std::string hostname;  ///< set when not empty; at most 64 bytes
    /// The host's CLOCK_REALTIME in ns since the epoch, set as the guest's when not 0: a guest
    /// has no RTC, and one restored from a snapshot resumes at the capture's time.
    std::int64_t wall_clock_ns = 0;
    /// After mixing in the entropy, make the kernel reseed its CRNG from it now
    /// (RNDRESEEDCRNG): VMs restored from one snapshot start with the same CRNG state, and
    /// without this would produce the same bytes until the next scheduled reseed.
    bool force_reseed = false;
};
/// File operations. Paths are absolute guest paths (resolved by the guest: symlinks and `..`
/// mean what they mean inside the guest).
struct file_request {
    enum class operation { read, write, list_dir, stat, remove, rename, mkdir };
    operation op = operation::stat;
    std::string path;
    std::string target;          ///< rename: the new path
    std::uint32_t mode = 0644;   ///< write (file mode), mkdir (0755 is sent by the host)
    bool recursive = false;      ///< remove: a whole tree; mkdir: create parents (mkdir -p)
};
using request = std::variant<ping_request, exec_request, kill_request, init_request, file_request>;

struct pong_response {
    std::string agent_version;
};

struct exit_response {
    int exit_code = -1;      ///< -1 when killed by a signal
    int signal = 0;
    bool timed_out = false;
    bool stdout_truncated = false;
    bool stderr_truncated = false;
    std::uint64_t duration_us = 0;
};

struct error_response {
    int error_number = 0;  ///< errno from the guest (e.g. ENOENT for a missing program)
    std::string message;
};

struct ok_response {};
enum class file_type { regular, directory, symlink, other };
struct stat_response {
    file_type type = file_type::other;
    std::uint64_t size = 0;
    std::uint32_t mode = 0;       ///< permission bits
    std::int64_t mtime_ns = 0;
};
struct dir_entry {
    std::string name;  ///< one path component: not empty, not . or .., no '/' or NUL
    file_type type = file_type::other;
    std::uint64_t size = 0;
};
struct listing_response {
    /// Entries fit one message frame: a directory too large for it is cut and flagged.
    static constexpr std::size_t max_entries = 4096;
    std::vector<dir_entry> entries;
    bool truncated = false;
};
using response =
    std::variant<pong_response, exit_response, error_response, ok_response, stat_response, listing_response>;

boost::json::value to_json(const request& r);
boost::json::value to_json(const response& r);
/// malformed_message for anything that is not a valid message of this version,
/// version_mismatch for another version.
boost::system::result<request> request_from_json(const boost::json::value& v);
boost::system::result<response> response_from_json(const boost::json::value& v);

/// Serialize / parse one message frame body.
std::string serialize(const boost::json::value& v);
boost::system::result<boost::json::value> parse_message(std::string_view body);

}  // namespace mimobox::agent
