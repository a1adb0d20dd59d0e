// Whether this host can run microVMs.
#pragma once

#include <boost/system/error_code.hpp>

#include <string>

namespace mimobox::vm {

/// Opens /dev/kvm, creates a VM with one vCPU and runs a one-instruction guest to its HLT.
/// Returns success only when all of that works: a present but unusable /dev/kvm (no
/// permission, no hardware virtualization behind it) yields microvm_errc::unsupported_platform,
/// and the system error that caused it is described in `detail` when given.
boost::system::error_code check_kvm_usable(std::string* detail = nullptr);

}  // namespace mimobox::vm
