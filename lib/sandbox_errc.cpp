#include "mimobox/vm/sandbox_errc.hpp"
#include "mimobox/vm/guest_file_errc.hpp"

namespace mimobox::vm {

namespace {
class sandbox_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.sandbox"; }
    std::string message(int ev) const override {
        switch (static_cast<sandbox_errc>(ev)) {
        case sandbox_errc::ready_timeout: return "the guest agent did not become ready in time";
        case sandbox_errc::agent_disconnected: return "the guest agent's connection ended before its answer";
        case sandbox_errc::agent_protocol: return "the guest agent broke the protocol";
        case sandbox_errc::agent_error: return "the guest agent could not start the operation";
        case sandbox_errc::vm_stopped: return "the sandbox's VM stopped during the operation";
        case sandbox_errc::stdin_closed: return "the command's stdin is closed";
        case sandbox_errc::unsupported_transport: return "the requested agent transport is not available";
        case sandbox_errc::agent_timeout: return "the guest agent did not answer within the host's deadline";
        }
        return "unknown mimobox.sandbox error";
    }
};

class guest_file_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.guest_file"; }
    std::string message(int ev) const override {
        switch (static_cast<guest_file_errc>(ev)) {
        case guest_file_errc::not_found: return "no such file or directory in the guest";
        case guest_file_errc::permission_denied: return "permission denied in the guest";
        case guest_file_errc::io: return "I/O error in the guest";
        case guest_file_errc::out_of_space: return "no space left in the guest";
        case guest_file_errc::is_directory: return "is a directory";
        case guest_file_errc::not_a_directory: return "a path component is not a directory";
        case guest_file_errc::already_exists: return "already exists in the guest";
        case guest_file_errc::directory_not_empty: return "directory not empty";
        case guest_file_errc::name_too_long: return "file name too long";
        case guest_file_errc::symlink_loop: return "too many levels of symbolic links";
        case guest_file_errc::invalid_path: return "invalid guest path";
        case guest_file_errc::busy: return "file busy in the guest";
        case guest_file_errc::file_too_large: return "file too large";
        case guest_file_errc::not_a_regular_file: return "not a regular file";
        }
        return "unknown mimobox.guest_file error";
    }
};
}  // namespace

const boost::system::error_category& sandbox_category() noexcept {
    static const sandbox_category_impl instance;
    return instance;
}

const boost::system::error_category& guest_file_category() noexcept {
    static const guest_file_category_impl instance;
    return instance;
}

}  // namespace mimobox::vm

#include <cerrno>

namespace mimobox::vm {

// Guest and host are both x86-64 Linux, so errno values mean the same on both sides.
guest_file_errc guest_file_errc_from_errno(int guest_errno) noexcept {
    switch (guest_errno) {
    case ENOENT: return guest_file_errc::not_found;
    case EACCES:
    case EPERM:
    case EROFS: return guest_file_errc::permission_denied;
    case ENOSPC:
    case EDQUOT: return guest_file_errc::out_of_space;
    case EISDIR: return guest_file_errc::is_directory;
    case ENOTDIR: return guest_file_errc::not_a_directory;
    case EEXIST: return guest_file_errc::already_exists;
    case ENOTEMPTY: return guest_file_errc::directory_not_empty;
    case ENAMETOOLONG: return guest_file_errc::name_too_long;
    case ELOOP: return guest_file_errc::symlink_loop;
    case EINVAL: return guest_file_errc::invalid_path;
    case EBUSY:
    case ETXTBSY: return guest_file_errc::busy;
    case EFBIG: return guest_file_errc::file_too_large;
    case ENXIO: return guest_file_errc::not_a_regular_file;
    default: return guest_file_errc::io;
    }
}

}  // namespace mimobox::vm
