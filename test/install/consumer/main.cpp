// Built against an installed mimobox: proves the headers, the archive and the package config.
#include <mimobox/vm/error.hpp>
#include <mimobox/vm/platform.hpp>
#include <mimobox/vm/version.hpp>

#include <cstdio>

int main() {
    auto unsupported = make_error_code(mimobox::vm::microvm_errc::unsupported_platform);
    if (unsupported.category().name() != std::string_view("mimobox.microvm")) return 1;
    std::string detail;
    auto ec = mimobox::vm::check_kvm_usable(&detail);
    std::printf("mimobox %s: kvm %s%s%s\n", mimobox::vm::version_string, ec ? ec.message().c_str() : "usable",
                detail.empty() ? "" : " - ", detail.c_str());
    return 0;
}
