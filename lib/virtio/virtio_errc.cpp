#include "virtio/virtio_errc.hpp"

namespace mimobox::virtio {

namespace {
class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.virtio"; }
    std::string message(int ev) const override {
        switch (static_cast<virtio_errc>(ev)) {
        case virtio_errc::descriptor_index_out_of_range: return "descriptor index outside the queue";
        case virtio_errc::descriptor_out_of_memory: return "descriptor buffer outside guest memory";
        case virtio_errc::chain_too_long: return "descriptor chain longer than the queue (loop?)";
        case virtio_errc::zero_length_descriptor: return "zero-length descriptor";
        case virtio_errc::readable_after_writable: return "device-readable descriptor after a writable one";
        case virtio_errc::indirect_not_negotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
        case virtio_errc::chain_too_large: return "descriptor chain larger than the device accepts";
        case virtio_errc::avail_index_jump: return "available index moved by more than the queue size";
        case virtio_errc::ring_out_of_memory: return "virtqueue ring outside guest memory or misaligned";
        case virtio_errc::used_buffer_unknown: return "returned a descriptor head that was not in flight";
        }
        return "unknown mimobox.virtio error";
    }
};
}  // namespace

const boost::system::error_category& virtio_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace mimobox::virtio
