// mimobox-kvm-probe: exit 0 when this host can run KVM guests, 1 (with the reason) otherwise.
// The test launcher uses it to choose between native KVM and the QEMU TCG harness.
#include "mimobox/vm/platform.hpp"

#include <cstdio>

int main() {
    std::string detail;
    if (auto ec = mimobox::vm::check_kvm_usable(&detail)) {
        std::fprintf(stderr, "kvm unusable: %s (%s)\n", ec.message().c_str(), detail.c_str());
        return 1;
    }
    std::puts("kvm usable");
    return 0;
}
