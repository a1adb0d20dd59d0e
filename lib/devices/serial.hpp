// 16550-compatible UART as Linux's 8250 driver expects it (kvm-reference.md 3.1): transmit goes
// to a sink, receive comes from a bounded input queue, THRE and RDA interrupts.
#pragma once

#include "devices/bus_device.hpp"
#include "devices/interrupt_line.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <span>

namespace mimobox::devices {

class serial final : public bus_device {
public:
    using output_sink = std::function<void(std::uint8_t)>;
    static constexpr std::size_t input_capacity = 64 * 1024;

    serial(interrupt_line& irq, output_sink sink) : irq_(irq), sink_(std::move(sink)) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    /// Queues bytes for the guest to read; returns how many fit (the queue is bounded).
    std::size_t enqueue_input(std::span<const std::uint8_t> bytes);

private:
    std::uint8_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint8_t value);
    bool dlab() const noexcept { return lcr_ & 0x80; }
    void update_interrupt();

    interrupt_line& irq_;
    output_sink sink_;
    std::deque<std::uint8_t> input_;
    std::uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0;
    std::uint8_t dll_ = 0x0c, dlh_ = 0;
    bool thre_pending_ = false;
};

}  // namespace mimobox::devices
