// What file operations in the guest report.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mimobox::vm {

enum class guest_file_type { regular, directory, symlink, other };

/// microvm_sandbox::async_remove: what to remove.
struct guest_remove_options {
    bool recursive = false;  ///< a whole tree (symlinks are removed, not followed)
};

/// microvm_sandbox::async_mkdir: how to create.
struct guest_mkdir_options {
    bool parents = false;       ///< like mkdir -p: missing parents are created, an existing directory is fine
    std::uint32_t mode = 0755;  ///< permission bits of every directory created (before the guest's umask)
};

struct guest_file_stat {
    guest_file_type type = guest_file_type::other;
    std::uint64_t size = 0;
    std::uint32_t mode = 0;  ///< permission bits
    std::chrono::nanoseconds mtime{0};  ///< since the epoch, guest clock
};

struct guest_dir_entry {
    std::string name;
    guest_file_type type = guest_file_type::other;  ///< of the entry itself (symlinks not followed)
    std::uint64_t size = 0;
};

}  // namespace mimobox::vm
