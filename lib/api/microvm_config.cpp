#include "mimobox/vm/microvm_config.hpp"

#include "mimobox/vm/error.hpp"

namespace mimobox::vm {

boost::system::error_code microvm_config::validate() const {
    if (vcpu_count == 0) return microvm_errc::zero_vcpus;
    if (vcpu_count > max_vcpus) return microvm_errc::too_many_vcpus;
    if (memory_mib < min_memory_mib) return microvm_errc::memory_too_small;
    if (memory_mib > max_memory_mib) return microvm_errc::memory_too_large;
    if (vsock_cid < 3 || vsock_cid == 0xffffffffu) return microvm_errc::invalid_vsock_cid;
    if (vsock != vsock_link::virtio_mmio && vsock != vsock_link::virtio_pci && vsock != vsock_link::com2_uart) return microvm_errc::invalid_vsock_link;
    for (unsigned char c : cmdline_extra)
        if (c < 0x20 || c == 0x7f) return microvm_errc::cmdline_invalid;
    std::error_code fs_ec;
    if (kernel.empty() || !std::filesystem::is_regular_file(kernel, fs_ec)) return microvm_errc::kernel_not_found;
    if (initramfs.empty() || !std::filesystem::is_regular_file(initramfs, fs_ec))
        return microvm_errc::initramfs_not_found;
    return {};
}

}  // namespace mimobox::vm
