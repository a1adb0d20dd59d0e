// An edge-triggered interrupt a device raises (an irqfd in a VM, a counter in tests).
#pragma once

namespace mimobox::devices {

class interrupt_line {
public:
    virtual ~interrupt_line() = default;
    virtual void trigger() = 0;
};

}  // namespace mimobox::devices
