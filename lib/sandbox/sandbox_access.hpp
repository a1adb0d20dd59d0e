// Building a microvm_sandbox around a given sandbox_state (the sandbox layer's unit tests,
// which supply a VM of their own: sandbox_vm.hpp; restore_pool's shells), and reaching the
// state of one (vm_pool).
#pragma once

#include "mimobox/vm/microvm_sandbox.hpp"

#include <memory>

namespace mimobox::vm::detail {

struct sandbox_access {
    static microvm_sandbox make(std::shared_ptr<sandbox_state> state) { return microvm_sandbox(std::move(state)); }
    /// The state a sandbox shares with its operations (vm_pool pauses idle ones through it).
    static const std::shared_ptr<sandbox_state>& state_of(const microvm_sandbox& sb) noexcept { return sb.state_; }
};

}  // namespace mimobox::vm::detail
