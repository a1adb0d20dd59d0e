// The part of the i8042 keyboard controller a guest uses to reset the machine: status reads
// that never block, and command 0xFE on port 0x64 (pulse the CPU reset line).
#pragma once

#include "devices/bus_device.hpp"
#include "snapshot/state_stream.hpp"

#include <functional>

namespace mimobox::devices {

class i8042 final : public bus_device {
public:
    /// Registered at port 0x60, length 5 (0x60-0x64).
    explicit i8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    void save(snapshot::state_writer& out) const;
    boost::system::error_code restore(snapshot::state_reader& in);

private:
    std::function<void()> on_reset_;
    std::uint8_t command_byte_ = 0x45;
    bool expect_command_byte_ = false;
    bool output_full_ = false;
    std::uint8_t output_ = 0;
};

}  // namespace mimobox::devices
