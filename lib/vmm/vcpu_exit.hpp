// A KVM_RUN result decoded into a small variant, so the exit loop is one std::visit.
#pragma once

#include "kvm/kvm_abi.hpp"
#include "mimobox/vm/kvm_exit_reason.hpp"

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace mimobox::vmm {

struct io_exit {
    std::uint16_t port;
    bool write;
    std::uint8_t size;                // bytes per access
    std::span<std::uint8_t> data;     // count * size bytes inside kvm_run; filled in for reads
};
struct mmio_exit {
    std::uint64_t addr;
    bool write;
    std::span<std::uint8_t> data;     // kvm_run::mmio.data, len bytes
};
struct shutdown_exit {};              // triple fault
struct system_event_exit {
    std::uint32_t type;
};
struct halt_exit {};
struct kicked_exit {};                // KVM_RUN returned EINTR: pause, stop or a stray signal
struct fatal_exit {
    vm::kvm_exit_reason reason;
    std::string detail;
};

using vcpu_exit = std::variant<io_exit, mmio_exit, shutdown_exit, system_event_exit, halt_exit, kicked_exit, fatal_exit>;

/// `run_result` is KVM_RUN's outcome; `run` the vCPU's mmapped area of `run_size` bytes. The
/// kernel writes the I/O data offset, but it is still checked to lie inside the mapping.
vcpu_exit decode_exit(const boost::system::error_code& run_result, kvm_run& run, std::size_t run_size);

}  // namespace mimobox::vmm
