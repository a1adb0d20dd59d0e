#include "virtio/virtio_errc.hpp"

#include "common/error_table.hpp"

namespace mimobox::virtio {

namespace {
constexpr common::error_row rows[] = {
    {static_cast<int>(virtio_errc::descriptor_index_out_of_range), "descriptor index outside the queue"},
    {static_cast<int>(virtio_errc::descriptor_out_of_memory), "descriptor buffer outside guest memory"},
    {static_cast<int>(virtio_errc::chain_too_long), "descriptor chain longer than the queue (loop?)"},
    {static_cast<int>(virtio_errc::zero_length_descriptor), "zero-length descriptor"},
    {static_cast<int>(virtio_errc::readable_after_writable), "device-readable descriptor after a writable one"},
    {static_cast<int>(virtio_errc::indirect_not_negotiated), "indirect descriptor without VIRTIO_F_INDIRECT_DESC"},
    {static_cast<int>(virtio_errc::chain_too_large), "descriptor chain larger than the device accepts"},
    {static_cast<int>(virtio_errc::avail_index_jump), "available index moved by more than the queue size"},
    {static_cast<int>(virtio_errc::ring_out_of_memory), "virtqueue ring outside guest memory or misaligned"},
    {static_cast<int>(virtio_errc::used_buffer_unknown), "returned a descriptor head that was not in flight"},
};
}  // namespace

const boost::system::error_category& virtio_category() noexcept {
    static const common::table_category instance("mimobox.virtio", rows);
    return instance;
}

}  // namespace mimobox::virtio
