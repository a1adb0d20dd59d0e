// How packets move between a VM's vsock muxer and its guest: a virtio-vsock device
// (virtio_vsock_link) or framed packets over a second UART (serial_vsock_link). vsock_host owns
// the muxer and the pending stream operations and drives whichever link the config chose; all
// of it runs on the VM's strand, except serve_on_vcpu_thread.
#pragma once

#include "devices/bus.hpp"
#include "kvm/vm.hpp"
#include "snapshot/state_stream.hpp"

#include <boost/system/error_code.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>

namespace mimobox::vmm {

class packet_link {
public:
    using error_code = boost::system::error_code;

    virtual ~packet_link() = default;
    /// Registers the link's device on a bus and its interrupt (and doorbells) with KVM.
    virtual error_code attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) = 0;
    /// `on_activity` runs (on the strand) whenever the guest moved packets; `keep_alive` is
    /// held by any worker the link starts, until stop().
    virtual void start(std::function<void()> on_activity, std::shared_ptr<void> keep_alive) = 0;
    virtual void stop() = 0;
    /// Moves packets both ways as far as the guest allows now.
    virtual void process() = 0;
    /// Set once the link is unusable for good (a corrupted serial stream); every connection
    /// has been aborted with it and new operations fail with it.
    virtual error_code failure() const { return {}; }
    /// Packets wait for the guest to take them (see vsock_host::lost_interrupt_watch, which
    /// then calls renotify every 500 ms while this holds, and every second while operations
    /// wait on a guest that has gone quiet).
    virtual bool starved_for_rx_buffers() const { return false; }
    /// Raises the guest's receive interrupt again if it looks lost; true if it did.
    virtual bool renotify() { return false; }
    /// An interrupt was held back to be merged with a later one (virtio_vsock_link: TX
    /// completions); the owner calls flush_interrupt() if nothing else raised it soon.
    virtual bool owes_interrupt() const { return false; }
    virtual void flush_interrupt() {}
    /// Serves a guest MMIO access on the vCPU thread that made it, if the link can do so
    /// without its strand (virtio_vsock_link: the interrupt status and acknowledge registers);
    /// false leaves it to the strand. Called from vCPU threads, concurrently with the strand.
    virtual bool serve_on_vcpu_thread(std::uint64_t, bool, std::span<std::uint8_t>) noexcept { return false; }
    /// The same for one port access (virtio_vsock_link: PCI configuration space).
    virtual bool serve_port_on_vcpu_thread(std::uint16_t, bool, std::span<std::uint8_t>) { return false; }
    /// Grows while the guest moves bytes a link sees below the packet level (the serial line);
    /// the stall watch counts it as activity.
    virtual std::uint64_t bytes_moved() const { return 0; }
    virtual std::string describe() const = 0;

    /// Snapshot state of the link's devices; links that cannot be captured say
    /// snapshot_errc::unsupported_vm. restore() runs before start(), with guest memory mapped.
    virtual error_code save(snapshot::state_writer&) const { return vm::snapshot_errc::unsupported_vm; }
    virtual error_code restore(snapshot::state_reader&) { return vm::snapshot_errc::unsupported_vm; }
    /// After start() on a restored VM: the guest learns its connections are gone, and work it
    /// queued before the capture (a TX kick, a pending interrupt) is replayed.
    virtual void after_restore() {}
};

}  // namespace mimobox::vmm
