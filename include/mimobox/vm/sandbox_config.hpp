// How a microvm_sandbox talks to its guest agent; the VM itself is a microvm_config.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mimobox::vm {

enum class kvm_transport {
    vsock,   ///< the in-process virtio-vsock device (default, fast)
    serial,  ///< the same protocol over a second UART (COM2), for guest kernels without vsock: the VM
             ///< gets no virtio device; every byte is a trapped port access, so it is slow (about
             ///< 1 KB/s under nested emulation); ARCHITECTURE.md, section The serial transport
};

struct sandbox_config {
    kvm_transport transport = kvm_transport::vsock;
    std::uint32_t agent_port = 52;
    /// From boot until the agent answers. Generous: under nested emulation a boot takes seconds.
    std::chrono::milliseconds ready_timeout{120'000};
    /// The guest's hostname (at most 64 bytes).
    std::string hostname = "mimobox";
    /// Bytes of host randomness mixed into the guest's RNG at startup (0 to skip, at most 512).
    std::size_t rng_seed_bytes = 64;
};

}  // namespace mimobox::vm
