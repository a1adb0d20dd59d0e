// 16550-compatible UART as Linux's 8250 driver expects it (kvm-reference.md 3.1): transmit goes
// to a sink, receive comes from a bounded input queue, THRE and RDA interrupts. With
// rts_flow_control the guest sees received data only while it asserts RTS (MCR bit 1): Linux
// drops RTS when its tty buffer fills (CRTSCTS) and before the port is opened, so nothing the
// host queues is lost to an overrun or to a closed port.
#pragma once

#include "devices/bus_device.hpp"
#include "devices/interrupt_line.hpp"
#include "snapshot/state_stream.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>

namespace mimobox::devices {

class serial final : public bus_device {
public:
    using output_sink = std::function<void(std::uint8_t)>;
    static constexpr std::size_t input_capacity = 64 * 1024;

    enum class flow_control { none, rts };

    serial(interrupt_line& irq, output_sink sink, flow_control flow = flow_control::none)
        : irq_(irq), sink_(std::move(sink)), flow_(flow) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    /// Queues bytes for the guest to read; returns how many fit (the queue is bounded).
    std::size_t enqueue_input(std::span<const std::uint8_t> bytes);
    std::size_t input_room() const noexcept { return input_capacity - input_.size(); }
    /// Received bytes wait that the guest may read now.
    bool input_pending() const noexcept { return input_visible(); }
    std::uint64_t bytes_read() const noexcept { return bytes_read_; }
    /// Raises the interrupt again if a condition is pending (see serial_vsock_link::renotify).
    void reraise_interrupt() { update_interrupt(); }
    /// Register state for stall diagnostics.
    std::string describe() const;
    /// Registers and queued input, for a snapshot; restore() refuses more input than the
    /// queue holds (corrupt_state) and raises whatever interrupt the registers say is due.
    void save(snapshot::state_writer& out) const;
    boost::system::error_code restore(snapshot::state_reader& in);
    /// Called when the guest has read the last queued byte, so the owner can queue more.
    void on_input_drained(std::function<void()> cb) { input_drained_ = std::move(cb); }

private:
    std::uint8_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint8_t value);
    bool dlab() const noexcept { return lcr_ & 0x80; }
    void update_interrupt();
    /// Received data the guest may see now (RTS gating).
    bool input_visible() const noexcept;

    interrupt_line& irq_;
    output_sink sink_;
    flow_control flow_;
    std::function<void()> input_drained_;
    std::deque<std::uint8_t> input_;
    std::uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0;
    std::uint8_t dll_ = 0x0c, dlh_ = 0;
    bool thre_pending_ = false;
    std::uint64_t bytes_read_ = 0;
};

}  // namespace mimobox::devices
