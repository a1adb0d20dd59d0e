// Finding the guest kernel and initramfs on disk, and checking them against `.sha256` sidecars
// before a VM boots them, so a truncated download or a stale copy fails with a clear error
// instead of a guest that hangs or panics.
//
// The check guards against accidents, not attackers: anyone who can write the assets directory
// can rewrite the sidecars too, and a file swapped after the check is not noticed.
#pragma once

#include "mimobox/vm/error.hpp"
#include "mimobox/vm/microvm_config.hpp"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <filesystem>

namespace mimobox::vm {

struct vm_assets {
    std::filesystem::path kernel;     ///< `bzImage`, or `vmlinux` when there is no bzImage
    std::filesystem::path initramfs;  ///< `initramfs.cpio.gz`
};

/// Where assets are looked for by default: $MIMOBOX_VM_ASSETS_DIR if set and non-empty (so tests
/// and deployments can point elsewhere), else $HOME/.mimobox/assets, else an empty path.
/// Only reads the environment; does not touch the filesystem.
std::filesystem::path vm_assets_dir();

/// `preferred` if non-empty, else vm_assets_dir(). Fails with asset_errc::assets_dir_not_found
/// unless the result is an existing directory.
boost::system::result<std::filesystem::path> resolve_vm_assets_dir(const std::filesystem::path& preferred = {});

/// The kernel (`bzImage`, falling back to `vmlinux`) and `initramfs.cpio.gz` in `dir`.
/// Fails with asset_errc::asset_missing when either is absent. Does not verify checksums.
boost::system::result<vm_assets> find_vm_assets(const std::filesystem::path& dir);

/// Checks `file` against its sidecar `<file>.sha256`, in the format `sha256sum` writes
/// (64 hex digits, then optionally whitespace and a file name, which is ignored).
/// Costs one SHA-256 pass over the whole file (streamed; the file is never held in memory).
/// Errors: asset_missing (no file), checksum_missing (no sidecar), checksum_malformed,
/// asset_integrity (hash differs); an I/O failure is returned as the system error.
boost::system::error_code verify_asset(const std::filesystem::path& file);

/// Verifies both files (one SHA-256 pass over each), then returns `base` with kernel and
/// initramfs set; every other field of `base` is kept.
boost::system::result<microvm_config> microvm_config_from_vm_assets(const vm_assets& assets,
                                                                    microvm_config base = {});

/// resolve_vm_assets_dir(dir), find_vm_assets, then microvm_config_from_vm_assets.
boost::system::result<microvm_config> microvm_config_from_assets_dir(const std::filesystem::path& dir = {},
                                                                     microvm_config base = {});

}  // namespace mimobox::vm
