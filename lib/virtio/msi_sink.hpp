// Where a device's MSI messages go: KVM_SIGNAL_MSI in a VM (vmm/kvm_msi.hpp), a recorder in
// tests.
#pragma once

#include <cstdint>

namespace mimobox::virtio {

class msi_sink {
public:
    virtual ~msi_sink() = default;
    virtual void signal(std::uint64_t address, std::uint32_t data) = 0;
};

}  // namespace mimobox::virtio
