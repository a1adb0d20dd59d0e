#include "devices/serial.hpp"

#include <algorithm>

namespace mimobox::devices {

namespace {
constexpr std::uint8_t ier_rda = 0x01, ier_thre = 0x02, ier_mask = 0x0f;
constexpr std::uint8_t iir_none = 0x01, iir_thre = 0x02, iir_rda = 0x04, iir_fifo = 0xc0;
constexpr std::uint8_t lsr_data_ready = 0x01, lsr_empty = 0x60;
constexpr std::uint8_t msr_default = 0xb0;  // DCD, DSR, CTS
constexpr std::uint8_t mcr_rts = 0x02;
}  // namespace

bool serial::input_visible() const noexcept {
    return !input_.empty() && (flow_ == flow_control::none || (mcr_ & mcr_rts));
}

void serial::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (data.empty()) return;
    data[0] = read_register(offset);
    for (std::size_t i = 1; i < data.size(); ++i) data[i] = 0;
}

void serial::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (!data.empty()) write_register(offset, data[0]);
}

std::uint8_t serial::read_register(std::uint64_t offset) {
    switch (offset) {
    case 0: {
        if (dlab()) return dll_;
        if (!input_visible()) return 0;
        std::uint8_t b = input_.front();
        input_.pop_front();
        ++bytes_read_;
        update_interrupt();
        if (input_.empty() && input_drained_) input_drained_();
        return b;
    }
    case 1: return dlab() ? dlh_ : ier_;
    case 2: {
        std::uint8_t iir = iir_none;
        if ((ier_ & ier_rda) && input_visible()) {
            iir = iir_rda;
        } else if ((ier_ & ier_thre) && thre_pending_) {
            iir = iir_thre;
            thre_pending_ = false;  // reading IIR acknowledges THRE
        }
        return iir | iir_fifo;
    }
    case 3: return lcr_;
    case 4: return mcr_;
    case 5: return lsr_empty | (input_visible() ? lsr_data_ready : 0);
    case 6: return msr_default;
    case 7: return scr_;
    default: return 0xff;
    }
}

void serial::write_register(std::uint64_t offset, std::uint8_t value) {
    switch (offset) {
    case 0:
        if (dlab()) {
            dll_ = value;
        } else {
            if (mcr_ & 0x10) {  // loopback: what is sent is received
                if (input_.size() < input_capacity) input_.push_back(value);
            } else if (sink_) {
                sink_(value);
            }
            thre_pending_ = true;
            update_interrupt();
        }
        break;
    case 1:
        if (dlab()) {
            dlh_ = value;
        } else {
            bool thre_enabled_now = !(ier_ & ier_thre) && (value & ier_thre);
            ier_ = value & ier_mask;
            // The transmitter is always empty, so enabling THRE raises it at once (as hardware does).
            if (thre_enabled_now) thre_pending_ = true;
            update_interrupt();
        }
        break;
    case 3: lcr_ = value; break;
    case 4:
        mcr_ = value & 0x1f;
        update_interrupt();  // raising RTS may uncover queued input
        break;
    case 7: scr_ = value; break;
    default: break;  // FCR and read-only registers
    }
}

std::string serial::describe() const {
    return "uart ier=" + std::to_string(ier_) + " mcr=" + std::to_string(mcr_) + " lcr=" + std::to_string(lcr_) +
           " input=" + std::to_string(input_.size()) + " visible=" + std::to_string(input_visible()) +
           " thre_pending=" + std::to_string(thre_pending_) + " bytes_read=" + std::to_string(bytes_read_);
}

std::size_t serial::enqueue_input(std::span<const std::uint8_t> bytes) {
    std::size_t n = std::min(bytes.size(), input_capacity - input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    if (n) update_interrupt();
    return n;
}

void serial::update_interrupt() {
    if (((ier_ & ier_rda) && input_visible()) || ((ier_ & ier_thre) && thre_pending_)) irq_.trigger();
}

void serial::save(snapshot::state_writer& out) const {
    for (std::uint8_t r : {ier_, lcr_, mcr_, scr_, dll_, dlh_}) out.u8(r);
    out.boolean(thre_pending_);
    out.u64(bytes_read_);
    const std::vector<std::uint8_t> queued(input_.begin(), input_.end());
    out.bytes(queued);
}

boost::system::error_code serial::restore(snapshot::state_reader& in) {
    for (std::uint8_t* r : {&ier_, &lcr_, &mcr_, &scr_, &dll_, &dlh_}) *r = in.u8();
    thre_pending_ = in.boolean();
    bytes_read_ = in.u64();
    auto queued = in.bytes(input_capacity);
    if (in.failed()) return in.error();
    input_.assign(queued.begin(), queued.end());
    update_interrupt();
    return {};
}

}  // namespace mimobox::devices
