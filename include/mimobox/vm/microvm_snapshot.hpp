// A captured microVM: its vCPU, VM and device state plus its guest memory, from which any
// number of new VMs can be restored (kvm_backend::async_restore, microvm_sandbox::async_restore).
//
//   auto snap = co_await sandbox.async_snapshot(asio::use_awaitable);  // in memory
//   if (auto ec = snap.save(dir / "base")) throw boost::system::system_error(ec);  // on disk, atomically
//   auto loaded = microvm_snapshot::load(dir / "base").value();  // checked; throws if damaged
//   auto clone = co_await microvm_sandbox::async_restore(ex, loaded, asio::use_awaitable);
//
// A snapshot is a cheap handle (copies share one immutable capture) and is safe to use from any
// thread. Its memory is a file restored VMs map copy-on-write: a restore reads only the pages
// its guest touches, and all VMs restored from one snapshot share the unmodified ones.
// Limits: the guest's vsock must be virtio (snapshot_errc::unsupported_vm for com2_uart); a
// snapshot restores only on a host with the same CPU vendor and at least the CPUID features
// the guest saw (snapshot_errc::cpu_mismatch), into a VM of the same vCPU count, memory size
// and vsock link (snapshot_errc::shape_mismatch).
#pragma once

#include "mimobox/vm/microvm_config.hpp"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

namespace mimobox::vm {

namespace detail {
struct snapshot_data;
}

class microvm_snapshot {
public:
    /// An empty handle: valid() is false and restoring it fails with snapshot_errc::not_a_snapshot.
    microvm_snapshot() noexcept = default;
    /// Wraps a capture (the library makes these; see kvm_backend::async_snapshot).
    explicit microvm_snapshot(std::shared_ptr<const detail::snapshot_data> data) noexcept;

    bool valid() const noexcept { return data_ != nullptr; }
    std::uint32_t vcpu_count() const noexcept;
    std::uint32_t memory_mib() const noexcept;
    vsock_link vsock() const noexcept;
    /// Bytes of guest memory the memory file holds: what the guest touched and left non-zero.
    /// The file is sparse; the rest of memory_mib is holes.
    std::uint64_t memory_data_bytes() const noexcept;
    /// Guest memory the host had backed when this was captured (pages the guest touched, zero
    /// or not): what the VM cost in host memory then. 0 for a snapshot loaded or from_bytes.
    std::uint64_t memory_touched_bytes() const noexcept;

    /// The state (metadata, vCPU, VM and device state, the memory file's chunk hashes) as one
    /// self-checking byte string. Empty for an empty handle.
    std::vector<std::uint8_t> to_bytes() const;
    /// The memory file; valid while this snapshot (or a copy) lives. Read it, map it
    /// MAP_PRIVATE or copy it; never write it: restored VMs map it. A captured snapshot's is a
    /// memfd sealed against writes and resizing; a loaded one's is opened read-only.
    /// -1 for an empty handle.
    int memory_fd() const noexcept;
    /// The inverse of to_bytes() and memory_fd(): checks the state's hash and fields, and every
    /// data chunk of the memory file against the state's record (a read of what the file holds,
    /// not of all guest memory). `memory_fd` is duplicated; the caller keeps its own.
    static boost::system::result<microvm_snapshot> from_bytes(std::span<const std::uint8_t> state, int memory_fd);

    /// Writes the snapshot as directory `dir` (files `state` and `memory`, sparse) atomically:
    /// a temporary directory beside it, synced, then renamed. `dir` must not exist (EEXIST).
    /// Blocks on the disk: call it off the io_context's threads for large guests.
    boost::system::error_code save(const std::filesystem::path& dir) const;
    /// Opens a directory written by save(), with the checks of from_bytes. A missing file
    /// compares equal to condition::not_found; damage is a snapshot_errc (condition::bad_snapshot).
    /// Never rewrite a snapshot's files while VMs restored from them run: they map the memory file.
    static boost::system::result<microvm_snapshot> load(const std::filesystem::path& dir);

    /// The capture itself, for the library's restore path.
    const std::shared_ptr<const detail::snapshot_data>& data() const noexcept { return data_; }

private:
    std::shared_ptr<const detail::snapshot_data> data_;
};

}  // namespace mimobox::vm
