// The virtio-vsock link: the device model behind a virtio-mmio transport at 0xd0000000, its
// interrupt on GSI 5 (KVM_IRQ_LINE, see kvm_irq_line.hpp) and one ioeventfd per queue, each
// drained by a coroutine.
#pragma once

#include "memory/guest_memory.hpp"
#include "virtio/mmio_transport.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vmm/vsock_link.hpp"
#include "vsock/vsock_device.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>

#include <vector>

namespace mimobox::vmm {

class virtio_vsock_link final : public vsock_link {
public:
    static constexpr std::uint64_t mmio_base = 0xd0000000;
    static constexpr std::uint64_t mmio_size = 0x1000;
    static constexpr std::uint32_t gsi = 5;

    virtio_vsock_link(boost::asio::strand<boost::asio::any_io_executor> strand, const memory::guest_memory& memory,
                      vsock::muxer& mux);

    error_code attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) override;
    void start(std::function<void()> on_activity, std::shared_ptr<void> keep_alive) override;
    void stop() override;
    void process() override { device_.process(); }
    bool starved_for_rx_buffers() const override { return device_.starved_for_rx_buffers(); }
    bool renotify() override { return device_.renotify(); }
    bool owes_interrupt() const override { return device_.interrupt_owed(); }
    void flush_interrupt() override { device_.flush_owed_interrupt(); }
    bool serve_on_vcpu_thread(std::uint64_t addr, bool is_write, std::span<std::uint8_t> data) noexcept override {
        return addr >= mmio_base && addr < mmio_base + mmio_size &&
               transport_.access_interrupt_registers(addr - mmio_base, is_write, data);
    }
    std::string describe() const override;

private:
    boost::asio::awaitable<void> queue_worker(std::size_t index, std::shared_ptr<void> keep_alive);

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    vsock::vsock_device device_;
    kvm_irq_line irq_;
    virtio::mmio_transport transport_;
    std::vector<boost::asio::posix::stream_descriptor> queue_events_;
    std::function<void()> on_activity_;
    bool stopped_ = false;
};

}  // namespace mimobox::vmm
