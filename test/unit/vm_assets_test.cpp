#include "mimobox/vm/vm_assets.hpp"

#define BOOST_TEST_MODULE vm_assets
#include <boost/test/unit_test.hpp>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace mimobox::vm;

namespace {

// Known SHA-256 vectors (FIPS 180-2 examples), so no external tool is needed.
constexpr const char* abc_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* million_a_sha256 = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
// 3 MiB of 'a': `head -c 3145728 /dev/zero | tr '\0' a | sha256sum`.
constexpr const char* three_mib_a_sha256 = "6f850bc94ae6f7de14297c01616c36d712d22864497b28a63b81d776b035e656";

void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
    BOOST_REQUIRE(out.good());
}

fs::path sidecar_of(const fs::path& p) {
    fs::path s = p;
    s += ".sha256";
    return s;
}

struct temp_dir {
    fs::path dir = fs::temp_directory_path() / ("mimobox-vm-assets-test-" + std::to_string(::getpid()));
    temp_dir() {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~temp_dir() { fs::remove_all(dir); }

    // An asset "abc" with a correct bare-digest sidecar.
    fs::path asset(const std::string& name) const {
        write_file(dir / name, "abc");
        write_file(sidecar_of(dir / name), std::string(abc_sha256) + "\n");
        return dir / name;
    }
};

// Sets (or unsets, with nullopt) an environment variable and restores it on scope exit, so the
// cases do not leak into each other.
struct env_guard {
    std::string name;
    std::optional<std::string> saved;
    env_guard(std::string n, std::optional<std::string> value) : name(std::move(n)) {
        if (const char* v = std::getenv(name.c_str())) saved = v;
        if (value) ::setenv(name.c_str(), value->c_str(), 1);
        else ::unsetenv(name.c_str());
    }
    ~env_guard() {
        if (saved) ::setenv(name.c_str(), saved->c_str(), 1);
        else ::unsetenv(name.c_str());
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(env_var_wins_over_home) {
    env_guard home("HOME", "/home/someone");
    env_guard dir("MIMOBOX_VM_ASSETS_DIR", "/opt/assets");
    BOOST_TEST(vm_assets_dir() == fs::path("/opt/assets"));
}

BOOST_AUTO_TEST_CASE(home_is_the_fallback_when_env_var_is_unset_or_empty) {
    env_guard home("HOME", "/home/someone");
    {
        env_guard dir("MIMOBOX_VM_ASSETS_DIR", std::nullopt);
        BOOST_TEST(vm_assets_dir() == fs::path("/home/someone/.mimobox/assets"));
    }
    env_guard dir("MIMOBOX_VM_ASSETS_DIR", "");
    BOOST_TEST(vm_assets_dir() == fs::path("/home/someone/.mimobox/assets"));
}

BOOST_AUTO_TEST_CASE(no_env_and_no_home_gives_an_empty_path_that_does_not_resolve) {
    env_guard home("HOME", std::nullopt);
    env_guard dir("MIMOBOX_VM_ASSETS_DIR", std::nullopt);
    BOOST_TEST(vm_assets_dir().empty());
    auto r = resolve_vm_assets_dir();
    BOOST_TEST((r.has_error() && r.error() == asset_errc::assets_dir_not_found));
}

BOOST_AUTO_TEST_CASE(resolve_prefers_the_argument_and_requires_an_existing_directory) {
    temp_dir t;
    env_guard dir("MIMOBOX_VM_ASSETS_DIR", "/nonexistent/elsewhere");
    auto ok = resolve_vm_assets_dir(t.dir);
    BOOST_REQUIRE(ok.has_value());
    BOOST_TEST(*ok == t.dir);

    auto missing = resolve_vm_assets_dir(t.dir / "missing");
    BOOST_TEST((missing.has_error() && missing.error() == asset_errc::assets_dir_not_found));
    auto from_env = resolve_vm_assets_dir();
    BOOST_TEST((from_env.has_error() && from_env.error() == asset_errc::assets_dir_not_found));
    write_file(t.dir / "file", "x");  // a regular file is not a directory
    auto not_dir = resolve_vm_assets_dir(t.dir / "file");
    BOOST_TEST((not_dir.has_error() && not_dir.error() == asset_errc::assets_dir_not_found));
}

BOOST_AUTO_TEST_CASE(find_fails_with_asset_missing_when_either_file_is_absent) {
    temp_dir t;
    auto none = find_vm_assets(t.dir);
    BOOST_TEST((none.has_error() && none.error() == asset_errc::asset_missing));
    write_file(t.dir / "bzImage", "k");
    auto no_initramfs = find_vm_assets(t.dir);
    BOOST_TEST((no_initramfs.has_error() && no_initramfs.error() == asset_errc::asset_missing));
    fs::remove(t.dir / "bzImage");
    write_file(t.dir / "initramfs.cpio.gz", "i");
    auto no_kernel = find_vm_assets(t.dir);
    BOOST_TEST((no_kernel.has_error() && no_kernel.error() == asset_errc::asset_missing));
}

BOOST_AUTO_TEST_CASE(find_prefers_bzimage_and_falls_back_to_vmlinux) {
    temp_dir t;
    write_file(t.dir / "vmlinux", "k");
    write_file(t.dir / "initramfs.cpio.gz", "i");
    auto a = find_vm_assets(t.dir);
    BOOST_REQUIRE(a.has_value());
    BOOST_TEST(a->kernel == t.dir / "vmlinux");
    BOOST_TEST(a->initramfs == t.dir / "initramfs.cpio.gz");
    write_file(t.dir / "bzImage", "k");
    a = find_vm_assets(t.dir);
    BOOST_REQUIRE(a.has_value());
    BOOST_TEST(a->kernel == t.dir / "bzImage");
}

BOOST_AUTO_TEST_CASE(correct_bare_digest_sidecar_verifies) {
    temp_dir t;
    auto ec = verify_asset(t.asset("abc"));
    BOOST_TEST(!ec, ec.message());
}

BOOST_AUTO_TEST_CASE(sha256sum_format_sidecar_with_a_file_name_verifies) {
    temp_dir t;
    auto file = t.asset("bzImage");
    write_file(sidecar_of(file), std::string(abc_sha256) + "  bzImage\n");
    BOOST_TEST(!verify_asset(file));
    // Binary-mode output, a name from another directory, and upper-case hex are all fine too.
    write_file(sidecar_of(file), std::string(abc_sha256) + " */some/other/dir/bzImage\n");
    BOOST_TEST(!verify_asset(file));
    std::string upper = abc_sha256;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    write_file(sidecar_of(file), upper);
    BOOST_TEST(!verify_asset(file));
}

BOOST_AUTO_TEST_CASE(a_flipped_byte_fails_with_asset_integrity) {
    temp_dir t;
    auto file = t.asset("bzImage");
    write_file(file, "abd");
    BOOST_TEST((verify_asset(file) == asset_errc::asset_integrity));
}

BOOST_AUTO_TEST_CASE(missing_sidecar_fails_with_checksum_missing) {
    temp_dir t;
    auto file = t.asset("bzImage");
    fs::remove(sidecar_of(file));
    BOOST_TEST((verify_asset(file) == asset_errc::checksum_missing));
}

BOOST_AUTO_TEST_CASE(missing_asset_fails_with_asset_missing_even_with_a_sidecar) {
    temp_dir t;
    auto file = t.asset("bzImage");
    fs::remove(file);
    BOOST_TEST((verify_asset(file) == asset_errc::asset_missing));
}

BOOST_AUTO_TEST_CASE(garbage_sidecar_fails_with_checksum_malformed) {
    temp_dir t;
    auto file = t.asset("bzImage");
    const std::string bad[] = {
        "",
        "not a checksum at all\n",
        std::string(abc_sha256).substr(0, 63) + "\n",      // one digit short
        std::string(abc_sha256).substr(0, 63) + "g\n",     // not hex
        std::string(abc_sha256) + std::string(abc_sha256),  // 128 digits: a SHA-512, not a SHA-256
        "  " + std::string(abc_sha256) + "\n",             // leading whitespace
    };
    for (const auto& text : bad) {
        write_file(sidecar_of(file), text);
        BOOST_TEST((verify_asset(file) == asset_errc::checksum_malformed), "sidecar: '" << text << "'");
    }
    fs::remove(sidecar_of(file));
    fs::create_directory(sidecar_of(file));
    BOOST_TEST((verify_asset(file) == asset_errc::checksum_malformed));
}

BOOST_AUTO_TEST_CASE(files_larger_than_one_read_chunk_hash_correctly) {
    temp_dir t;
    // 1,000,000 bytes does not end on a chunk boundary; 3 MiB does.
    write_file(t.dir / "million", std::string(1'000'000, 'a'));
    write_file(sidecar_of(t.dir / "million"), std::string(million_a_sha256) + "  million\n");
    auto ec = verify_asset(t.dir / "million");
    BOOST_TEST(!ec, ec.message());

    write_file(t.dir / "big", std::string(3 * 1024 * 1024, 'a'));
    write_file(sidecar_of(t.dir / "big"), std::string(three_mib_a_sha256) + "  big\n");
    ec = verify_asset(t.dir / "big");
    BOOST_TEST(!ec, ec.message());
    write_file(sidecar_of(t.dir / "big"), std::string(million_a_sha256) + "  big\n");
    BOOST_TEST((verify_asset(t.dir / "big") == asset_errc::asset_integrity));
}

BOOST_AUTO_TEST_CASE(config_from_assets_dir_points_into_the_dir_and_keeps_base_fields) {
    temp_dir t;
    t.asset("bzImage");
    t.asset("initramfs.cpio.gz");
    microvm_config base;
    base.memory_mib = 512;
    base.vcpu_count = 2;
    base.cmdline_extra = "quiet";
    auto c = microvm_config_from_assets_dir(t.dir, base);
    BOOST_REQUIRE_MESSAGE(c.has_value(), (c.has_error() ? c.error().message() : std::string()));
    BOOST_TEST(c->kernel == t.dir / "bzImage");
    BOOST_TEST(c->initramfs == t.dir / "initramfs.cpio.gz");
    BOOST_TEST(c->memory_mib == 512u);
    BOOST_TEST(c->vcpu_count == 2u);
    BOOST_TEST(c->cmdline_extra == "quiet");
    BOOST_TEST(!c->validate());

    // With no argument the directory comes from the environment.
    env_guard dir("MIMOBOX_VM_ASSETS_DIR", t.dir.string());
    auto from_env = microvm_config_from_assets_dir();
    BOOST_REQUIRE(from_env.has_value());
    BOOST_TEST(from_env->kernel == t.dir / "bzImage");
}

BOOST_AUTO_TEST_CASE(config_from_assets_dir_reports_the_first_failure) {
    temp_dir t;
    auto missing_dir = microvm_config_from_assets_dir(t.dir / "missing");
    BOOST_TEST((missing_dir.has_error() && missing_dir.error() == asset_errc::assets_dir_not_found));
    t.asset("bzImage");
    auto no_initramfs = microvm_config_from_assets_dir(t.dir);
    BOOST_TEST((no_initramfs.has_error() && no_initramfs.error() == asset_errc::asset_missing));
    t.asset("initramfs.cpio.gz");
    write_file(t.dir / "initramfs.cpio.gz", "abd");  // corrupted after its sidecar was written
    auto corrupt = microvm_config_from_assets_dir(t.dir);
    BOOST_TEST((corrupt.has_error() && corrupt.error() == asset_errc::asset_integrity));
}

BOOST_AUTO_TEST_CASE(asset_errors_have_their_own_category_and_messages) {
    boost::system::error_code ec = asset_errc::checksum_malformed;
    BOOST_TEST(ec.category().name() == std::string("mimobox.asset"));
    BOOST_TEST(ec.message().find("malformed") != std::string::npos);
    BOOST_TEST(make_error_code(asset_errc::asset_integrity).message() != ec.message());
}
