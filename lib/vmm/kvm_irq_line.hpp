// An edge-triggered interrupt on a GSI of the in-kernel IOAPIC, raised with KVM_IRQ_LINE (up,
// then down) from the thread that decides it. For an IOAPIC pin an irqfd is no cheaper: KVM
// cannot inject those from the eventfd's wake-up, so it hands every one to a workqueue, a
// kworker wake-up and two context switches on the way to the guest (docs/decisions/0006).
#pragma once

#include "devices/interrupt_line.hpp"
#include "kvm/vm.hpp"

#include <cstdint>

namespace mimobox::vmm {

class kvm_irq_line final : public devices::interrupt_line {
public:
    /// Until connected, trigger() does nothing (no VM to interrupt yet). `vm` must outlive us:
    /// the machine declares its kvm::vm before the devices that hold a line.
    void connect(kvm::vm& vm, std::uint32_t gsi) noexcept {
        vm_ = &vm;
        gsi_ = gsi;
    }
    void trigger() override {
        if (!vm_) return;
        // Errors would mean the VM fd itself is gone: nothing to interrupt then.
        (void)vm_->irq_line(gsi_, true);
        (void)vm_->irq_line(gsi_, false);
    }

private:
    kvm::vm* vm_ = nullptr;
    std::uint32_t gsi_ = 0;
};

}  // namespace mimobox::vmm
