// virtio-mmio version 2 (virtio 1.2 §4.2.2) in front of one virtio_device: the register file,
// the status handshake, feature negotiation, queue setup rules, interrupt status and reset.
// Runs on the VM's strand (register accesses arrive as MMIO exits), except the interrupt
// status and acknowledge registers, which vCPU threads serve themselves.
#pragma once

#include "devices/bus_device.hpp"
#include "devices/interrupt_line.hpp"
#include "memory/guest_memory.hpp"
#include "virtio/device_handshake.hpp"
#include "virtio/transport.hpp"
#include "virtio/virtio_device.hpp"

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

namespace mimobox::virtio {

class mmio_transport final : public devices::bus_device, public transport {
public:
    mmio_transport(virtio_device& device, const memory::guest_memory& memory, devices::interrupt_line& irq);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    /// Raises the used-buffer interrupt (the device calls this after returning buffers); no new
    /// edge while the guest has not acknowledged the previous one.
    void signal_used_buffers() override;
    /// Sets the used-buffer bit and raises an edge unconditionally (recovery from a lost one).
    void resignal_used_buffers() override {
        interrupt_status_.fetch_or(interrupt_used_buffer, std::memory_order_acq_rel);
        raise_edge();
    }
    void fail_device() override;

    std::uint32_t device_status() const noexcept { return handshake_.status(); }
    std::uint64_t driver_features() const noexcept { return handshake_.driver_features(); }
    bool active() const noexcept { return handshake_.active(); }
    std::uint32_t interrupt_status() const noexcept { return interrupt_status_.load(std::memory_order_acquire); }
    /// For stall diagnostics: edges raised, and the guest's reads of InterruptStatus (one per
    /// interrupt it takes).
    std::uint64_t edges_raised() const noexcept { return edges_raised_.load(std::memory_order_relaxed); }
    std::uint64_t status_reads() const noexcept { return status_reads_.load(std::memory_order_relaxed); }
    /// Clears the bits the driver acknowledges (InterruptACK). Safe from any thread.
    void acknowledge_interrupt(std::uint32_t bits) noexcept { interrupt_status_.fetch_and(~bits, std::memory_order_acq_rel); }

    /// Snapshot state: feature selectors, interrupt status and the handshake (restore():
    /// into a fresh transport whose guest memory is mapped).
    void save(snapshot::state_writer& out) const;
    boost::system::error_code restore(snapshot::state_reader& in);

    /// The guest reads InterruptStatus and writes InterruptACK on every interrupt. Both are one
    /// atomic, so any thread may serve them: a vCPU thread answers them itself instead of
    /// handing the exit to the VM's strand and waiting for it. Handles a 4-byte read of
    /// InterruptStatus or write of InterruptACK (as read() and write() would) and returns true;
    /// anything else is left alone (false) for the strand.
    bool access_interrupt_registers(std::uint64_t offset, bool is_write, std::span<std::uint8_t> data) noexcept;

private:
    std::uint32_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint32_t value);
    void write_status(std::uint32_t value);
    std::uint32_t read_interrupt_status() noexcept {
        status_reads_.fetch_add(1, std::memory_order_relaxed);
        return interrupt_status();
    }
    void raise_edge() {
        edges_raised_.fetch_add(1, std::memory_order_relaxed);
        irq_.trigger();
    }

    device_handshake handshake_;
    devices::interrupt_line& irq_;
    std::uint32_t device_features_sel_ = 0, driver_features_sel_ = 0;
    std::atomic<std::uint32_t> interrupt_status_{0};
    std::atomic<std::uint64_t> edges_raised_{0}, status_reads_{0};
};

}  // namespace mimobox::virtio
