#include "devices/i8042.hpp"

#include <algorithm>

namespace mimobox::devices {

namespace {
constexpr std::uint64_t data_port = 0, status_port = 4;
constexpr std::uint8_t cmd_read_command_byte = 0x20, cmd_write_command_byte = 0x60, cmd_reset_cpu = 0xfe;
constexpr std::uint8_t status_output_full = 0x01, status_system_flag = 0x04;
}  // namespace

void i8042::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), std::uint8_t{0});
    if (data.empty()) return;
    if (offset == status_port) {
        // Bit 1 (input buffer full) always 0, so the guest's kb_wait() never spins.
        data[0] = status_system_flag | (output_full_ ? status_output_full : 0);
    } else if (offset == data_port) {
        data[0] = output_;
        output_full_ = false;
    }
}

void i8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (data.empty()) return;
    const std::uint8_t v = data[0];
    if (offset == status_port) {
        switch (v) {
        case cmd_reset_cpu:
            if (on_reset_) on_reset_();
            break;
        case cmd_read_command_byte:
            output_ = command_byte_;
            output_full_ = true;
            break;
        case cmd_write_command_byte: expect_command_byte_ = true; break;
        default: break;
        }
    } else if (offset == data_port && expect_command_byte_) {
        command_byte_ = v;
        expect_command_byte_ = false;
    }
}

void i8042::save(snapshot::state_writer& out) const {
    out.u8(command_byte_);
    out.boolean(expect_command_byte_);
    out.boolean(output_full_);
    out.u8(output_);
}

boost::system::error_code i8042::restore(snapshot::state_reader& in) {
    command_byte_ = in.u8();
    expect_command_byte_ = in.boolean();
    output_full_ = in.boolean();
    output_ = in.u8();
    return in.error();
}

}  // namespace mimobox::devices
