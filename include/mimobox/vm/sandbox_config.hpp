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
    /// Not an aggregate, so `{}` is safe in a co_await operand on GCC 12 (see guest_exec_options).
    sandbox_config() = default;

    kvm_transport transport = kvm_transport::vsock;
    std::uint32_t agent_port = 52;
    /// From boot until the agent answers. Generous: under nested emulation a boot takes seconds.
    std::chrono::milliseconds ready_timeout{120'000};
    /// The guest's hostname (at most 64 bytes).
    std::string hostname = "mimobox";
    /// Bytes of host randomness mixed into the guest's RNG at startup (0 to skip, at most 512).
    std::size_t rng_seed_bytes = 64;
    /// Pause the VM after this long without an operation in flight (0: never). An operation is
    /// in flight from its start until its answer, and an exec_stream until its command ended.
    /// A paused VM holds no thread and its guest makes no progress: processes left running in
    /// the background stop, guest timers wait. The next operation resumes it first (a thread
    /// start per vCPU, well under a millisecond on hardware). Pools and clones held idle by the
    /// thousand rely on it; state() stays `ready` throughout (microvm_sandbox::idle_paused).
    std::chrono::milliseconds idle_pause_after{0};

    // ---- host-side limits: the guest is not trusted to keep its promises
    /// How long an operation other than exec waits for the guest to move any byte of it (either
    /// way) before it ends with sandbox_errc::agent_timeout. An exec with a timeout ends at most
    /// exec_timeout_grace after it; an exec without one waits for as long as the command runs
    /// (cancel it to stop waiting).
    std::chrono::milliseconds agent_idle_timeout{30'000};
    /// How long past its own timeout the host waits for an exec's answer (the guest kills the
    /// command at the timeout and answers; under nested emulation that takes a while).
    std::chrono::milliseconds exec_timeout_grace{10'000};
    /// async_read_file fails with guest_file_errc::file_too_large past this many bytes (the
    /// whole file is held in host memory).
    std::uint64_t max_read_file_bytes = 256u << 20;
};

}  // namespace mimobox::vm
