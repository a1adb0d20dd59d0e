// Building a microvm_sandbox around a given sandbox_state: for the sandbox layer's unit tests,
// which supply a VM of their own (sandbox_vm.hpp).
#pragma once

#include "mimobox/vm/microvm_sandbox.hpp"

#include <memory>

namespace mimobox::vm::detail {

struct sandbox_access {
    static microvm_sandbox make(std::shared_ptr<sandbox_state> state) { return microvm_sandbox(std::move(state)); }
};

}  // namespace mimobox::vm::detail
