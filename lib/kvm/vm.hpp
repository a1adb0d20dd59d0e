// RAII handle on a KVM VM file descriptor. Thin: each method is one ioctl.
#pragma once

#include "kvm/ioctl.hpp"
#include "kvm/unique_fd.hpp"

#include "kvm/kvm_abi.hpp"

#include <cstdint>

namespace mimobox::kvm {

class vcpu;

class vm {
public:
    explicit vm(unique_fd fd) noexcept : fd_(std::move(fd)) {}

    int fd() const noexcept { return fd_.get(); }
    int check_extension(long capability) const noexcept;

    error_code set_user_memory_region(std::uint32_t slot, std::uint64_t guest_phys, std::uint64_t size,
                                      void* host, std::uint32_t flags = 0) noexcept;
    error_code set_tss_addr(std::uint64_t addr) noexcept;
    error_code set_identity_map_addr(std::uint64_t addr) noexcept;
    error_code create_irqchip() noexcept;
    error_code create_pit2() noexcept;
    // ---- VM-wide state, for snapshots
    /// KVM_GET_IRQCHIP: chip 0 and 1 are the PICs, 2 the IOAPIC.
    result<kvm_irqchip> get_irqchip(std::uint32_t chip_id) const noexcept;
    error_code set_irqchip(const kvm_irqchip& chip) noexcept;
    result<kvm_pit_state2> get_pit2() const noexcept;
    error_code set_pit2(const kvm_pit_state2& pit) noexcept;
    /// KVM_GET_CLOCK: kvmclock's time base.
    result<kvm_clock_data> get_clock() const noexcept;
    error_code set_clock(const kvm_clock_data& clock) noexcept;
    error_code irq_line(std::uint32_t gsi, bool level) noexcept;
    /// KVM_IOEVENTFD on an MMIO address with a 4-byte datamatch (virtio QueueNotify).
    error_code assign_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, std::uint64_t datamatch) noexcept;
    error_code deassign_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, std::uint64_t datamatch) noexcept;
    /// The same on a port (virtio-pci notifications).
    error_code assign_port_ioeventfd(int eventfd, std::uint16_t port, std::uint32_t len, std::uint64_t datamatch) noexcept;
    /// KVM_SIGNAL_MSI: delivers one message through the in-kernel local APICs. A message the
    /// guest's APIC setup drops (KVM returns 0) is not an error.
    error_code signal_msi(std::uint64_t address, std::uint32_t data) noexcept;

    /// `mmap_size` is system::vcpu_mmap_size(), passed in so the vm needs no back pointer.
    result<vcpu> create_vcpu(std::uint32_t id, int mmap_size) noexcept;

private:
    unique_fd fd_;
};

}  // namespace mimobox::kvm
