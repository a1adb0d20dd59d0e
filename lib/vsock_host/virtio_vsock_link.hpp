// The virtio-vsock link: the device model behind a virtio-pci function (default) or a
// virtio-mmio window, one ioeventfd per queue, each drained by a coroutine.
// - virtio-pci: device 1 on bus 0 (configuration mechanism 1, whose ports this link registers:
//   it is the VM's only PCI device), registers in BAR 0 at 0xd0000000, notifications on ports
//   0x6000 + 2q, MSI-X through KVM_SIGNAL_MSI.
// - virtio-mmio: 0xd0000000, GSI 5 (KVM_IRQ_LINE, see kvm_irq_line.hpp), declared to the guest
//   on its command line.
#pragma once

#include "devices/pci_host.hpp"
#include "memory/guest_memory.hpp"
#include "mimobox/vm/microvm_config.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/pci_transport.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vmm/kvm_msi.hpp"
#include "vsock_host/packet_link.hpp"
#include "vsock/vsock_device.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <optional>
#include <vector>

namespace mimobox::vmm {

class virtio_vsock_link final : public packet_link {
public:
    static constexpr std::uint64_t mmio_base = 0xd0000000;
    static constexpr std::uint64_t mmio_size = 0x1000;
    static constexpr std::uint32_t gsi = 5;
    static constexpr unsigned pci_slot = 1;
    static constexpr virtio::pci_transport::placement pci_placement{0xd0000000, 0x6000};

    /// `bus` is vm::vsock_link::virtio_pci or virtio_mmio.
    virtio_vsock_link(boost::asio::strand<boost::asio::any_io_executor> strand, const memory::guest_memory& memory,
                      vsock::muxer& mux, vm::vsock_link bus);

    error_code attach(kvm::vm& vm, devices::bus& pio, devices::bus& mmio) override;
    void start(std::function<void()> on_activity, std::shared_ptr<void> keep_alive) override;
    void stop() override;
    void process() override { device_.process(); }
    bool starved_for_rx_buffers() const override { return device_.starved_for_rx_buffers(); }
    bool renotify() override { return device_.renotify(); }
    bool owes_interrupt() const override { return device_.interrupt_owed(); }
    void flush_interrupt() override { device_.flush_owed_interrupt(); }
    bool serve_on_vcpu_thread(std::uint64_t addr, bool is_write, std::span<std::uint8_t> data) noexcept override {
        return mmio_ && addr >= mmio_base && addr < mmio_base + mmio_size &&
               mmio_->access_interrupt_registers(addr - mmio_base, is_write, data);
    }
    /// PCI configuration mechanism 1: Linux makes several hundred of these accesses while it
    /// enumerates the bus at boot (746 port exits in one traced boot), each of which cost about
    /// 270 us under the harness when it went through the strand.
    bool serve_port_on_vcpu_thread(std::uint16_t port, bool is_write, std::span<std::uint8_t> data) override {
        if (!pci_ || port < devices::pci_host::port_base || port >= devices::pci_host::port_base + devices::pci_host::port_count ||
            port + data.size() > devices::pci_host::port_base + devices::pci_host::port_count)
            return false;
        if (is_write) pci_host_.write(port - devices::pci_host::port_base, data);
        else pci_host_.read(port - devices::pci_host::port_base, data);
        return true;
    }
    std::string describe() const override;
    error_code save(snapshot::state_writer& out) const override;
    error_code restore(snapshot::state_reader& in) override;
    void after_restore() override;

private:
    boost::asio::awaitable<void> queue_worker(std::size_t index, std::shared_ptr<void> keep_alive);
    /// A new eventfd, registered with KVM by `assign`, then read by a queue worker.
    error_code add_queue_event(const std::function<error_code(int fd)>& assign);

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    vsock::vsock_device device_;
    kvm_irq_line irq_;
    kvm_msi msi_;
    std::optional<virtio::mmio_transport> mmio_;  // exactly one of these two
    std::optional<virtio::pci_transport> pci_;
    devices::pci_host pci_host_;
    std::vector<boost::asio::posix::stream_descriptor> queue_events_;
    std::function<void()> on_activity_;
    bool stopped_ = false;
    bool more_work_posted_ = false;
    std::weak_ptr<void> owner_;  // from start(): the machine
    // After a restore: how long packets for the guest may wait for it to acknowledge the
    // transport reset (vsock_device::waiting_for_reset_ack) before they go anyway.
    std::optional<boost::asio::steady_timer> reset_ack_timer_;
    static constexpr std::chrono::milliseconds reset_ack_limit{1000};  // a process() that hit its bound already asked for another turn
};

}  // namespace mimobox::vmm
