// The serial link, for guest kernels without virtio-vsock: vsock packets framed by
// vsock::stream_link over a second 16550 (COM2: ports 0x2f8-0x2ff, GSI 3, interrupt by KVM_IRQ_LINE).
// Every byte the guest sends is one port write and every byte it receives two port reads, so
// this is orders of magnitude slower than virtio; RTS flow control means a guest that is slow to
// read never loses bytes. The guest end is the agent's serial bridge (guest/agent/serial_bridge).
#pragma once

#include "devices/serial.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vsock_host/packet_link.hpp"
#include "vsock/stream_link.hpp"

namespace mimobox::vmm {

class serial_vsock_link final : public packet_link {
public:
    static constexpr std::uint16_t port_base = 0x2f8;
    static constexpr std::uint32_t gsi = 3;

    explicit serial_vsock_link(vsock::muxer& mux);

    error_code attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) override;
    void start(std::function<void()> on_activity, std::shared_ptr<void>) override { on_activity_ = std::move(on_activity); }
    void stop() override { stopped_ = true; }
    void process() override;
    error_code failure() const override { return link_.error(); }
    /// Bytes wait that the guest may read: if its receive interrupt was lost (as the virtio
    /// link's was under nested emulation), vsock_host's watch raises it again.
    bool starved_for_rx_buffers() const override { return uart_.input_pending(); }
    bool renotify() override;
    std::uint64_t bytes_moved() const override { return uart_.bytes_read() + bytes_sent_; }
    std::string describe() const override;

private:
    void on_guest_byte(std::uint8_t byte);
    void activity();

    vsock::muxer& mux_;
    vsock::stream_link link_;
    kvm_irq_line irq_;
    devices::serial uart_;
    std::function<void()> on_activity_;
    bool stopped_ = false;
    std::uint64_t bytes_read_at_renotify_ = 0;
    std::uint64_t bytes_sent_ = 0;  // by the guest
};

}  // namespace mimobox::vmm
