// MSI messages into a KVM VM with KVM_SIGNAL_MSI, from the thread that decides them (the VM's
// strand). Unlike an IOAPIC pin (kvm_irq_line.hpp), an MSI needs one ioctl and no line to
// lower again.
#pragma once

#include "kvm/vm.hpp"
#include "virtio/msi_sink.hpp"

namespace mimobox::vmm {

class kvm_msi final : public virtio::msi_sink {
public:
    /// Until connected, signal() does nothing. `vm` must outlive us (the machine declares its
    /// kvm::vm before the devices).
    void connect(kvm::vm& vm) noexcept { vm_ = &vm; }
    void signal(std::uint64_t address, std::uint32_t data) override {
        if (vm_) (void)vm_->signal_msi(address, data);  // fails only when the VM fd is gone
    }

private:
    kvm::vm* vm_ = nullptr;
};

}  // namespace mimobox::vmm
