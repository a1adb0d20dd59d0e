// The states a kvm_backend moves through, and which moves are legal.
//
//   created --boot--> booting --> running <--pause/resume--> paused
//   booting (failure) / running / paused --> stopping --> stopped
#pragma once

#include <string_view>

namespace mimobox::vm {

enum class kvm_lifecycle { created, booting, running, pausing, paused, stopping, stopped };

/// The transition table. Everything not listed is rejected with lifecycle_errc.
constexpr bool is_valid_transition(kvm_lifecycle from, kvm_lifecycle to) noexcept {
    using enum kvm_lifecycle;
    switch (from) {
    case created: return to == booting || to == stopped;
    case booting: return to == running || to == stopping || to == stopped;
    case running: return to == pausing || to == stopping;
    case pausing: return to == paused || to == stopping;
    case paused: return to == running || to == stopping;
    case stopping: return to == stopped;
    case stopped: return false;
    }
    return false;
}

constexpr std::string_view to_string(kvm_lifecycle s) noexcept {
    using enum kvm_lifecycle;
    switch (s) {
    case created: return "created";
    case booting: return "booting";
    case running: return "running";
    case pausing: return "pausing";
    case paused: return "paused";
    case stopping: return "stopping";
    case stopped: return "stopped";
    }
    return "unknown";
}

}  // namespace mimobox::vm
