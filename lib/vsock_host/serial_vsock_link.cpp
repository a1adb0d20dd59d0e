#include "vsock_host/serial_vsock_link.hpp"

namespace mimobox::vmm {

serial_vsock_link::serial_vsock_link(vsock::muxer& mux)
    : mux_(mux),
      link_(mux, vsock::stream_link::role::responder),
      uart_(irq_, [this](std::uint8_t b) { on_guest_byte(b); }, devices::serial::flow_control::rts) {
    // The guest emptied the UART: queue the next bytes in the same port read, so it never waits.
    uart_.on_input_drained([this] { activity(); });
}

serial_vsock_link::error_code serial_vsock_link::attach(kvm::vm& vm, devices::bus& pio, devices::bus&) {
    irq_.connect(vm, gsi);
    if (!pio.add(port_base, 8, uart_)) return error_code(EEXIST, boost::system::system_category());
    return {};
}

void serial_vsock_link::on_guest_byte(std::uint8_t byte) {
    ++bytes_sent_;
    // Only a complete packet can change anything the host waits for.
    if (link_.feed(std::span(&byte, 1)) > 0 || link_.failed()) activity();  // a packet or a (re)sync
}

void serial_vsock_link::activity() {
    if (!stopped_ && on_activity_) on_activity_();
}

void serial_vsock_link::process() {
    if (stopped_) return;
    while (uart_.input_room() > 0) {
        const auto out = link_.pending_output();
        if (out.empty()) break;
        link_.consume_output(uart_.enqueue_input(out));
    }
}

bool serial_vsock_link::renotify() {
    // Only when the guest read nothing for a whole period: a busy line is not a lost interrupt.
    const bool stuck = uart_.bytes_read() == bytes_read_at_renotify_;
    bytes_read_at_renotify_ = uart_.bytes_read();
    if (stuck) uart_.reraise_interrupt();
    return stuck;
}

std::string serial_vsock_link::describe() const {
    return "serial vsock link: syncs=" + std::to_string(link_.syncs()) + " packets in=" + std::to_string(link_.packets_in()) +
           " out=" + std::to_string(link_.packets_out()) + " failed=" + std::to_string(link_.failed()) +
           " " + uart_.describe() + "\n" +
           mux_.describe();
}

}  // namespace mimobox::vmm
