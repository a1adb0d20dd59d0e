// What file operations in the guest report.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mimobox::vm {

enum class guest_file_type { regular, directory, symlink, other };

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
