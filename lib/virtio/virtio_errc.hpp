// Ways a guest driver can break the virtio contract. Any of them puts the device into
// DEVICE_NEEDS_RESET; none may crash the host or touch memory outside guest RAM.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::virtio {

enum class virtio_errc {
    descriptor_index_out_of_range = 1,  ///< head or next >= queue size
    descriptor_out_of_memory,           ///< [addr, addr+len) not wholly inside one guest RAM region
    chain_too_long,                     ///< more descriptors than the queue has (a loop, or worse)
    zero_length_descriptor,
    readable_after_writable,            ///< device-readable descriptor after a device-writable one
    indirect_not_negotiated,
    chain_too_large,                    ///< total bytes over the per-chain limit
    avail_index_jump,                   ///< the driver claims more new buffers than the queue holds
    ring_out_of_memory,                 ///< a ring lies outside guest RAM or is misaligned
    used_buffer_unknown,                ///< the device tried to return a head it never popped
};

const boost::system::error_category& virtio_category() noexcept;

inline boost::system::error_code make_error_code(virtio_errc e) noexcept {
    return {static_cast<int>(e), virtio_category()};
}

}  // namespace mimobox::virtio

template <>
struct boost::system::is_error_code_enum<mimobox::virtio::virtio_errc> : std::true_type {};
