// <linux/kvm.h> for C++. Include this, never <linux/kvm.h> directly.
//
// The uapi headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which wraps them in an
// empty struct. An empty struct has size 1 in C++ (0 in C), so in C++ sizeof(kvm_cpuid2) is 12
// instead of 8, `entries` moves to offset 12, and the ioctl numbers that encode the size
// (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET/SET_MSRS, KVM_GET_XSAVE, ...) are wrong:
// the kernel answers EINVAL. Declaring them as GNU zero-length arrays restores the C layout.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <linux/kvm.h>
#pragma GCC diagnostic pop

static_assert(sizeof(kvm_cpuid2) == 8, "<linux/kvm.h> was included before kvm/kvm_abi.hpp");
static_assert(sizeof(kvm_msrs) == 8 && sizeof(kvm_msr_list) == 4);
static_assert(sizeof(kvm_xsave) == 4096 && sizeof(kvm_irq_routing) == 8);
