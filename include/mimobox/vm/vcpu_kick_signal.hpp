// The signal mimobox uses to interrupt a vCPU thread inside KVM_RUN (pause, stop): a
// real-time signal, SIGRTMIN + 3 unless the application picks another before its first VM
// boots. mimobox installs a handler for it (an empty one, without SA_RESTART) when the first VM
// boots, and unblocks it on its own vCPU threads, whatever mask they inherit; a boot fails
// with microvm_errc::kick_signal_in_use if the application already handles that signal.
// Other threads of the application never receive it (it is sent to vCPU threads only).
#pragma once

#include <boost/system/error_code.hpp>

namespace mimobox::vm {

/// Chooses the kick signal; a real-time signal (SIGRTMIN..SIGRTMAX), before any VM boots,
/// else microvm_errc::invalid_kick_signal.
boost::system::error_code set_vcpu_kick_signal(int signal_number) noexcept;
/// The kick signal in use, or the one the first VM will use.
int vcpu_kick_signal() noexcept;

}  // namespace mimobox::vm
