#include "mimobox/vm/microvm_config.hpp"

#define BOOST_TEST_MODULE microvm_config
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"

#include <cstdio>
#include <filesystem>
#include <unistd.h>

using mimobox::vm::microvm_config;
using mimobox::vm::microvm_errc;
using mimobox::vm::vsock_link;

namespace {
struct temp_files {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / ("mimobox-config-test-" + std::to_string(::getpid()));
    temp_files() {
        std::filesystem::create_directories(dir);
        std::FILE* f = std::fopen((dir / "k").c_str(), "w");
        std::fclose(f);
        f = std::fopen((dir / "i").c_str(), "w");
        std::fclose(f);
    }
    ~temp_files() { std::filesystem::remove_all(dir); }
    microvm_config valid() const {
        microvm_config c;
        c.kernel = dir / "k";
        c.initramfs = dir / "i";
        return c;
    }
};
}  // namespace

BOOST_AUTO_TEST_CASE(valid_config_passes) {
    temp_files t;
    BOOST_TEST(!t.valid().validate());
}

BOOST_AUTO_TEST_CASE(each_bad_field_gets_its_own_error) {
    temp_files t;
    auto c = t.valid();
    c.vcpu_count = 0;
    BOOST_TEST((c.validate() == microvm_errc::zero_vcpus));
    c = t.valid();
    c.vcpu_count = microvm_config::max_vcpus + 1;
    BOOST_TEST((c.validate() == microvm_errc::too_many_vcpus));
    c = t.valid();
    c.memory_mib = 8;
    BOOST_TEST((c.validate() == microvm_errc::memory_too_small));
    c = t.valid();
    c.memory_mib = microvm_config::max_memory_mib + 1;
    BOOST_TEST((c.validate() == microvm_errc::memory_too_large));
    c = t.valid();
    c.kernel = t.dir / "missing";
    BOOST_TEST((c.validate() == microvm_errc::kernel_not_found));
    c = t.valid();
    c.initramfs = t.dir;  // a directory is not an initramfs
    BOOST_TEST((c.validate() == microvm_errc::initramfs_not_found));
    c = t.valid();
    c.cmdline_extra = "a\tb";
    BOOST_TEST((c.validate() == microvm_errc::cmdline_invalid));
    c = t.valid();
    c.vsock = static_cast<vsock_link>(9);
    BOOST_TEST((c.validate() == microvm_errc::invalid_vsock_link));
    c = t.valid();
    c.vsock = vsock_link::com2_uart;
    BOOST_TEST(!c.validate());
}
