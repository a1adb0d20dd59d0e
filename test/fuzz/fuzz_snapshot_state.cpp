// libFuzzer: arbitrary bytes as what a snapshot loader reads (a file from disk or another
// process): the state blob, the machine body inside it, and the devices' own state. Each must
// answer with a value or a typed snapshot error, never crash, hang or allocate what the input
// merely claims; a device given hostile state must stay safe to drive afterwards.
#include "snapshot/machine_state.hpp"

#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "fuzz_driver.hpp"
#include "snapshot/state_codec.hpp"
#include "virtio/mmio_transport.hpp"
#include "vsock/vsock_device.hpp"

using namespace mimobox;
using namespace mimobox::snapshot;

namespace {

struct quiet_irq final : devices::interrupt_line {
    void trigger() override {}
};

// Device state as restore reads it: COM1, the i8042, then the vsock device behind virtio-mmio,
// on guest RAM whose rings may be anywhere the state says.
void restore_devices(std::span<const std::uint8_t> bytes) {
    quiet_irq irq;
    devices::serial uart(irq, [](std::uint8_t) {});
    devices::i8042 kbd([] {});
    vsock::muxer mux(3);
    vsock::vsock_device dev(fuzz::guest_ram(), mux);
    virtio::mmio_transport transport(dev, fuzz::guest_ram(), irq);
    dev.attach(transport);
    state_reader in(bytes);
    const bool ok = !uart.restore(in) && !kbd.restore(in) && !in.boolean() && !transport.restore(in);
    // Whatever was accepted must be safe to run: the device processes its queues once and
    // sends its reset event, as a restored VM's does.
    if (ok) {
        dev.send_transport_reset();
        dev.process();
        std::uint8_t status[4] = {};
        transport.read(0x70, std::span(status));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> in(data, size);
    if (auto blob = from_bytes(in)) {
        // A well-formed blob re-encodes to the same bytes.
        if (to_bytes(*blob) != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
    } else if (blob.error().category() != vm::snapshot_category()) {
        __builtin_trap();
    }
    // The same bytes as a body (the blob's hash guards it on disk, but not against a writer
    // that computed one): the machine decoder, and the devices' restore.
    if (auto machine = decode_machine_state(in)) {
        if (encode_machine_state(*machine) != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
        restore_devices(machine->devices);
    } else if (machine.error() != vm::snapshot_errc::corrupt_state) {
        __builtin_trap();
    }
    restore_devices(in);
    return 0;
}
