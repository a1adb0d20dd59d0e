// What a microVM is made of: vCPUs, memory, kernel, initramfs, extra kernel arguments.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace mimobox::vm {

/// How the guest reaches the VM's in-process vsock (kvm_backend::async_vsock_connect works the
/// same over both).
enum class vsock_link {
    virtio_mmio,  ///< a virtio-vsock device on virtio-mmio (0xd0000000, GSI 5); needs CONFIG_VIRTIO_VSOCKETS
    virtio_pci,   ///< the same device as a virtio-pci function with MSI-X (the default): the fastest,
                  ///< every kick a port write and no interrupt registers; also needs CONFIG_PCI_MSI and
                  ///< CONFIG_VIRTIO_PCI
    com2_uart,    ///< vsock packets over a second 16550 (COM2, ttyS1) that the guest agent bridges; no
                  ///< virtio needed, but every byte is a port access, so orders of magnitude slower
};

struct microvm_config {
    /// Not an aggregate, so `{}` is safe in a co_await operand on GCC 12 (see guest_exec_options).
    microvm_config() = default;

    /// The VMM's own ceiling (the guest kernel is built with NR_CPUS=64); KVM's
    /// KVM_CAP_MAX_VCPUS is checked at boot as well.
    static constexpr unsigned max_vcpus = 64;
    static constexpr std::uint32_t min_memory_mib = 32;
    static constexpr std::uint32_t max_memory_mib = 64 * 1024;

    unsigned vcpu_count = 1;
    std::uint32_t memory_mib = 256;
    std::filesystem::path kernel;     ///< bzImage or ELF vmlinux
    std::filesystem::path initramfs;  ///< gzip or plain newc cpio
    std::string cmdline_extra;        ///< appended to the VMM's arguments; no control characters
    std::size_t console_capacity = 64 * 1024;  ///< bytes of serial output kept (the tail)
    /// The guest's vsock context id (3 and up; 0-2 are reserved, 0xffffffff is "any"). Each VM
    /// has its own in-process device, so every VM may use the same CID.
    std::uint32_t vsock_cid = 3;
    vsock_link vsock = vsock_link::virtio_pci;

    /// Checks what can be checked without KVM or reading the images: vCPU and memory bounds,
    /// that both files exist and are regular, that cmdline_extra has no control characters.
    /// Returns the first problem as a microvm_errc.
    boost::system::error_code validate() const;
};

}  // namespace mimobox::vm
