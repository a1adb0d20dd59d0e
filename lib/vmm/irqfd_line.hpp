// An interrupt line backed by an eventfd that KVM_IRQFD routes to a GSI: writing the eventfd
// injects the interrupt without a trip through any vCPU thread.
#pragma once

#include "devices/interrupt_line.hpp"
#include "kvm/unique_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace mimobox::vmm {

class irqfd_line final : public devices::interrupt_line {
public:
    irqfd_line() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
    /// -1 when the eventfd could not be created (errno says why).
    int fd() const noexcept { return fd_.get(); }
    void trigger() override {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd_.get(), &one, sizeof one);  // EAGAIN only at 2^64-1 pending
    }

private:
    kvm::unique_fd fd_;
};

}  // namespace mimobox::vmm
