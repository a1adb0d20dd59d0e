// check_kvm_usable(), run once per process and remembered: boot() consults it so that a host
// whose KVM cannot boot Linux guests fails fast with unsupported_platform instead of crawling.
#pragma once

#include <boost/system/error_code.hpp>

namespace mimobox::vm::detail {

boost::system::error_code cached_kvm_verdict();

}  // namespace mimobox::vm::detail
