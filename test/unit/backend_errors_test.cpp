// Bad input to kvm_backend::async_boot gets a typed error on any host: images and arguments
// are checked before KVM is touched. Uses the real guest kernel, damaged in specific ways.
#include "mimobox/vm/kvm_backend.hpp"

#define BOOST_TEST_MODULE backend_errors
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace mimobox::vm;
using boost::system::error_code;

namespace {

struct fixture {
    fs::path assets = std::getenv("MIMOBOX_VM_ASSETS_DIR") ? std::getenv("MIMOBOX_VM_ASSETS_DIR") : "";
    fs::path scratch = fs::temp_directory_path() / ("mimobox-backend-errors-" + std::to_string(::getpid()));
    fixture() { fs::create_directories(scratch); }
    ~fixture() { fs::remove_all(scratch); }

    microvm_config config() const {
        BOOST_REQUIRE_MESSAGE(!assets.empty(), "MIMOBOX_VM_ASSETS_DIR not set");
        microvm_config c;
        c.kernel = assets / "bzImage";
        c.initramfs = assets / "initramfs.cpio.gz";
        c.memory_mib = 128;
        return c;
    }
    std::vector<char> kernel_bytes() const {
        std::ifstream in(assets / "bzImage", std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    fs::path write(const std::string& name, const std::vector<char>& bytes) const {
        auto p = scratch / name;
        std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        return p;
    }
};

error_code boot(const microvm_config& cfg, kvm_lifecycle* final_state = nullptr) {
    boost::asio::io_context ctx;
    kvm_backend vm(ctx.get_executor(), cfg);
    error_code result = boost::asio::error::would_block;
    vm.async_boot([&](error_code ec) { result = ec; });
    ctx.run();
    if (final_state) *final_state = vm.state();
    return result;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(async_boot_rejects, fixture)

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_kernel) {
    auto c = config();
    c.kernel = c.initramfs;
    kvm_lifecycle state{};
    BOOST_TEST((boot(c, &state) == microvm_errc::not_a_kernel));
    BOOST_TEST((state == kvm_lifecycle::stopped));
}

BOOST_AUTO_TEST_CASE(a_truncated_bzimage) {
    auto bytes = kernel_bytes();
    bytes.resize(bytes.size() / 2);
    auto c = config();
    c.kernel = write("half-bzImage", bytes);
    BOOST_TEST((boot(c) == microvm_errc::truncated_kernel));
}

BOOST_AUTO_TEST_CASE(a_bzimage_with_an_old_boot_protocol) {
    auto bytes = kernel_bytes();
    bytes[0x206] = 0x04;  // version 2.04
    bytes[0x207] = 0x02;
    auto c = config();
    c.kernel = write("old-bzImage", bytes);
    BOOST_TEST((boot(c) == microvm_errc::boot_protocol_too_old));
}

BOOST_AUTO_TEST_CASE(an_elf_that_is_not_x86_64) {
    std::vector<char> bytes(4096, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_AARCH64;
    std::memcpy(bytes.data(), &eh, sizeof eh);
    auto c = config();
    c.kernel = write("arm64.elf", bytes);
    BOOST_TEST((boot(c) == microvm_errc::unsupported_elf));
}

BOOST_AUTO_TEST_CASE(memory_too_small_for_kernel_and_initramfs) {
    auto c = config();
    c.memory_mib = 48;
    c.initramfs = write("big-initramfs", std::vector<char>(40u << 20, 0));
    BOOST_TEST((boot(c) == microvm_errc::initramfs_does_not_fit));
}

BOOST_AUTO_TEST_CASE(a_missing_initramfs) {
    auto c = config();
    c.initramfs = scratch / "nope.cpio.gz";
    BOOST_TEST((boot(c) == microvm_errc::initramfs_not_found));
}

BOOST_AUTO_TEST_CASE(a_command_line_over_the_kernels_limit) {
    auto c = config();
    c.cmdline_extra = "mimobox.pad=" + std::string(2100, 'x');
    BOOST_TEST((boot(c) == microvm_errc::cmdline_too_long));
}

BOOST_AUTO_TEST_CASE(zero_vcpus_and_more_vcpus_than_allowed) {
    auto c = config();
    c.vcpu_count = 0;
    BOOST_TEST((boot(c) == microvm_errc::zero_vcpus));
    c.vcpu_count = microvm_config::max_vcpus + 1;
    BOOST_TEST((boot(c) == microvm_errc::too_many_vcpus));
}

BOOST_AUTO_TEST_CASE(a_second_boot_after_a_failed_one) {
    boost::asio::io_context ctx;
    auto c = config();
    c.vcpu_count = 0;
    kvm_backend vm(ctx.get_executor(), c);
    error_code first, second;
    vm.async_boot([&](error_code ec) {
        first = ec;
        vm.async_boot([&](error_code ec2) { second = ec2; });
    });
    ctx.run();
    BOOST_TEST((first == microvm_errc::zero_vcpus));
    BOOST_TEST((second == lifecycle_errc::invalid_state));
}

BOOST_AUTO_TEST_SUITE_END()
