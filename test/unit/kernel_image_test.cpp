#include "boot/kernel_image.hpp"

#define BOOST_TEST_MODULE kernel_image
#include <boost/test/unit_test.hpp>

#include "boot/loader.hpp"
#include "mimobox/vm/error.hpp"

#include <cstring>
#include <elf.h>
#include <vector>

using namespace mimobox::boot;
using mimobox::vm::microvm_errc;

namespace {

template <class T>
void put(std::vector<std::uint8_t>& b, std::size_t off, T v) {
    std::memcpy(b.data() + off, &v, sizeof v);
}

// A structurally valid bzImage: 4 setup sectors + boot sector, then `payload` bytes of kernel.
std::vector<std::uint8_t> fake_bzimage(std::size_t payload = 64 * 1024, std::uint16_t version = 0x020f) {
    std::vector<std::uint8_t> b(5 * 512 + payload, 0x90);
    b[0x1f1] = 4;
    put<std::uint32_t>(b, 0x1f4, static_cast<std::uint32_t>(payload / 16));
    put<std::uint16_t>(b, 0x1fe, 0xaa55);
    b[0x201] = 0x6a;  // header ends at 0x26c
    put<std::uint32_t>(b, 0x202, 0x53726448);
    put<std::uint16_t>(b, 0x206, version);
    b[0x211] = 0x01;
    put<std::uint32_t>(b, 0x22c, 0x7fffffff);
    put<std::uint16_t>(b, 0x236, 0x01);
    put<std::uint32_t>(b, 0x238, 2048);
    put<std::uint64_t>(b, 0x258, 0x1000000);
    put<std::uint32_t>(b, 0x260, 0x800000);
    return b;
}

std::vector<std::uint8_t> fake_elf(std::uint16_t machine = EM_X86_64) {
    std::vector<std::uint8_t> b(4096, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_type = ET_EXEC;
    eh.e_machine = machine;
    eh.e_entry = 0x1000000;
    eh.e_phoff = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 1;
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = 1024;
    ph.p_paddr = 0x1000000;
    ph.p_filesz = 2048;
    ph.p_memsz = 8192;
    std::memcpy(b.data(), &eh, sizeof eh);
    std::memcpy(b.data() + sizeof eh, &ph, sizeof ph);
    return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(valid_bzimage_parses_entry_limits_and_payload) {
    auto img = parse_bzimage(fake_bzimage());
    BOOST_REQUIRE(img);
    BOOST_TEST(img->entry_64 == 0x100200u);
    BOOST_TEST(img->cmdline_size == 2048u);
    BOOST_TEST(img->segments.size() == 1u);
    BOOST_TEST(img->segments[0].file_offset == 5u * 512);
    BOOST_TEST(img->reserve_end == 0x1800000u);  // pref_address + init_size
}

BOOST_AUTO_TEST_CASE(random_bytes_are_not_a_kernel) {
    std::vector<std::uint8_t> junk(8192, 0x5a);
    BOOST_TEST((parse_kernel(junk).error() == microvm_errc::not_a_kernel));
    BOOST_TEST((parse_kernel({}).error() == microvm_errc::not_a_kernel));
}

BOOST_AUTO_TEST_CASE(truncated_bzimage_is_reported_as_truncated) {
    auto b = fake_bzimage();
    b.resize(b.size() - 4096);  // payload shorter than syssize says
    BOOST_TEST((parse_kernel(b).error() == microvm_errc::truncated_kernel));
    b.resize(0x240);  // header cut in the middle
    BOOST_TEST((parse_bzimage(b).error() == microvm_errc::truncated_kernel));
}

BOOST_AUTO_TEST_CASE(old_boot_protocol_or_no_64bit_entry_is_rejected) {
    BOOST_TEST((parse_kernel(fake_bzimage(4096, 0x0206)).error() == microvm_errc::boot_protocol_too_old));
    auto b = fake_bzimage();
    put<std::uint16_t>(b, 0x236, 0);  // no XLF_KERNEL_64
    BOOST_TEST((parse_kernel(b).error() == microvm_errc::boot_protocol_too_old));
}

BOOST_AUTO_TEST_CASE(elf_for_another_architecture_is_unsupported) {
    BOOST_TEST(parse_kernel(fake_elf()).has_value());
    BOOST_TEST((parse_kernel(fake_elf(EM_AARCH64)).error() == microvm_errc::unsupported_elf));
}

BOOST_AUTO_TEST_CASE(elf_segment_past_end_of_file_is_truncated) {
    auto b = fake_elf();
    Elf64_Phdr ph;
    std::memcpy(&ph, b.data() + sizeof(Elf64_Ehdr), sizeof ph);
    ph.p_filesz = 1u << 20;
    ph.p_memsz = 1u << 20;
    std::memcpy(b.data() + sizeof(Elf64_Ehdr), &ph, sizeof ph);
    BOOST_TEST((parse_kernel(b).error() == microvm_errc::truncated_kernel));
}

BOOST_AUTO_TEST_CASE(initrd_goes_to_top_of_low_memory_page_aligned) {
    auto img = parse_bzimage(fake_bzimage()).value();
    auto placed = place_initrd(img, 64u << 20, 1000000);
    BOOST_REQUIRE(placed);
    BOOST_TEST(placed->addr % 4096 == 0u);
    BOOST_TEST(placed->addr + placed->size <= (64u << 20));
    BOOST_TEST(placed->addr >= img.reserve_end);
}

BOOST_AUTO_TEST_CASE(memory_too_small_for_kernel_or_initramfs_is_typed) {
    auto img = parse_bzimage(fake_bzimage()).value();
    BOOST_TEST((place_initrd(img, 16u << 20, 4096).error() == microvm_errc::kernel_does_not_fit));
    BOOST_TEST((place_initrd(img, 32u << 20, 20u << 20).error() == microvm_errc::initramfs_does_not_fit));
}
