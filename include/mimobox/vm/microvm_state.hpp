// A sandbox's lifecycle, as its users see it (the VMM's own states are kvm_lifecycle).
//
//   created --async_create--> booting --agent answers--> ready --async_destroy--> destroyed
//                                |                        |
//                                +------> failed <--------+  (boot error, agent never ready,
//                                                             VM stopped on its own)
// Operations need `ready`; anything else answers lifecycle_errc::invalid_state.
#pragma once

#include <string_view>

namespace mimobox::vm {

enum class microvm_state { created, booting, ready, failed, destroying, destroyed };

constexpr std::string_view to_string(microvm_state s) noexcept {
    switch (s) {
    case microvm_state::created: return "created";
    case microvm_state::booting: return "booting";
    case microvm_state::ready: return "ready";
    case microvm_state::failed: return "failed";
    case microvm_state::destroying: return "destroying";
    case microvm_state::destroyed: return "destroyed";
    }
    return "unknown";
}

/// Whether a sandbox may move from `from` to `to`.
constexpr bool is_valid_transition(microvm_state from, microvm_state to) noexcept {
    using s = microvm_state;
    switch (to) {
    case s::booting: return from == s::created;
    case s::ready: return from == s::booting;
    case s::failed: return from == s::booting || from == s::ready;
    case s::destroying: return from != s::destroying && from != s::destroyed;
    case s::destroyed: return from == s::destroying;
    case s::created: return false;
    }
    return false;
}

}  // namespace mimobox::vm
