#include "kvm/vm.hpp"

#include "kvm/vcpu.hpp"

#include <sys/mman.h>

namespace mimobox::kvm {

namespace {
error_code as_error(result<int> r) noexcept { return r ? error_code{} : r.error(); }
}  // namespace

int vm::check_extension(long capability) const noexcept {
    auto r = checked_ioctl(fd(), KVM_CHECK_EXTENSION, capability);
    return r ? *r : 0;
}

error_code vm::set_user_memory_region(std::uint32_t slot, std::uint64_t guest_phys, std::uint64_t size, void* host,
                                      std::uint32_t flags) noexcept {
    kvm_userspace_memory_region region{slot, flags, guest_phys, size, reinterpret_cast<std::uint64_t>(host)};
    return as_error(checked_ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &region));
}

error_code vm::set_tss_addr(std::uint64_t addr) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)));
}

error_code vm::set_identity_map_addr(std::uint64_t addr) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, &addr));
}

error_code vm::create_irqchip() noexcept { return as_error(checked_ioctl(fd(), KVM_CREATE_IRQCHIP, 0)); }

error_code vm::create_pit2() noexcept {
    kvm_pit_config config{};
    config.flags = KVM_PIT_SPEAKER_DUMMY;
    return as_error(checked_ioctl(fd(), KVM_CREATE_PIT2, &config));
}

result<kvm_irqchip> vm::get_irqchip(std::uint32_t chip_id) const noexcept {
    kvm_irqchip chip{};
    chip.chip_id = chip_id;
    if (auto r = checked_ioctl(fd(), KVM_GET_IRQCHIP, &chip); !r) return r.error();
    return chip;
}
error_code vm::set_irqchip(const kvm_irqchip& chip) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_IRQCHIP, &chip)); }
result<kvm_pit_state2> vm::get_pit2() const noexcept {
    kvm_pit_state2 pit{};
    if (auto r = checked_ioctl(fd(), KVM_GET_PIT2, &pit); !r) return r.error();
    return pit;
}
error_code vm::set_pit2(const kvm_pit_state2& pit) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_PIT2, &pit)); }
result<kvm_clock_data> vm::get_clock() const noexcept {
    kvm_clock_data clock{};
    if (auto r = checked_ioctl(fd(), KVM_GET_CLOCK, &clock); !r) return r.error();
    return clock;
}
error_code vm::set_clock(const kvm_clock_data& clock) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_CLOCK, &clock)); }

error_code vm::irq_line(std::uint32_t gsi, bool level) noexcept {
    kvm_irq_level irq{};
    irq.irq = gsi;
    irq.level = level ? 1 : 0;
    return as_error(checked_ioctl(fd(), KVM_IRQ_LINE, &irq));
}

namespace {
kvm_ioeventfd make_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, std::uint64_t datamatch,
                             std::uint32_t extra_flags) noexcept {
    kvm_ioeventfd io{};
    io.datamatch = datamatch;
    io.addr = addr;
    io.len = len;
    io.fd = eventfd;
    io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | extra_flags;
    return io;
}
}  // namespace

error_code vm::assign_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, std::uint64_t datamatch) noexcept {
    auto io = make_ioeventfd(eventfd, addr, len, datamatch, 0);
    return as_error(checked_ioctl(fd(), KVM_IOEVENTFD, &io));
}

error_code vm::deassign_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len,
                                  std::uint64_t datamatch) noexcept {
    auto io = make_ioeventfd(eventfd, addr, len, datamatch, KVM_IOEVENTFD_FLAG_DEASSIGN);
    return as_error(checked_ioctl(fd(), KVM_IOEVENTFD, &io));
}

error_code vm::assign_port_ioeventfd(int eventfd, std::uint16_t port, std::uint32_t len, std::uint64_t datamatch) noexcept {
    auto io = make_ioeventfd(eventfd, port, len, datamatch, KVM_IOEVENTFD_FLAG_PIO);
    return as_error(checked_ioctl(fd(), KVM_IOEVENTFD, &io));
}

error_code vm::signal_msi(std::uint64_t address, std::uint32_t data) noexcept {
    kvm_msi msi{};
    msi.address_lo = static_cast<std::uint32_t>(address);
    msi.address_hi = static_cast<std::uint32_t>(address >> 32);
    msi.data = data;
    return as_error(checked_ioctl(fd(), KVM_SIGNAL_MSI, &msi));
}

result<vcpu> vm::create_vcpu(std::uint32_t id, int mmap_size) noexcept {
    auto r = checked_ioctl(fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (!r) return r.error();
    unique_fd vcpu_fd(*r);
    void* run = ::mmap(nullptr, static_cast<std::size_t>(mmap_size), PROT_READ | PROT_WRITE, MAP_SHARED,
                       vcpu_fd.get(), 0);
    if (run == MAP_FAILED) return last_errno();
    return vcpu(std::move(vcpu_fd), static_cast<kvm_run*>(run), static_cast<std::size_t>(mmap_size), id);
}

}  // namespace mimobox::kvm
