#include "mimobox/vm/vm_assets.hpp"

#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace mimobox::vm {

namespace {

namespace fs = std::filesystem;
using boost::system::error_code;
using digest = std::array<std::uint8_t, 32>;

error_code errno_code(int e) { return {e, boost::system::system_category()}; }

// Closes the descriptor on every return path.
struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

// read(2) that retries on EINTR; returns bytes read, 0 at end, -1 with errno set.
ssize_t read_some(int fd, void* buf, std::size_t len) {
    for (;;) {
        ssize_t n = ::read(fd, buf, len);
        if (n >= 0 || errno != EINTR) return n;
    }
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// `sha256sum` output: 64 hex digits, then end of file or whitespace (then the file name, which we
// ignore: it depends on the directory sha256sum ran in, not on the content).
std::optional<digest> parse_sidecar(const std::string& text) {
    digest d{};
    if (text.size() < 2 * d.size()) return std::nullopt;
    for (std::size_t i = 0; i < d.size(); ++i) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        d[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    if (text.size() > 2 * d.size()) {
        char next = text[2 * d.size()];
        if (next != ' ' && next != '\t' && next != '\n' && next != '\r') return std::nullopt;
    }
    return d;
}

// Reads only the sidecar's start: the digest and the character after it are all that matter, and
// the cap keeps a huge wrong file from being read in full.
error_code read_sidecar(const fs::path& sidecar, digest& out) {
    std::error_code fs_ec;
    auto st = fs::status(sidecar, fs_ec);
    if (!fs::exists(st)) return asset_errc::checksum_missing;
    if (!fs::is_regular_file(st)) return asset_errc::checksum_malformed;

    fd_guard f{::open(sidecar.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) return errno == ENOENT ? error_code(asset_errc::checksum_missing) : errno_code(errno);
    std::string text(128, '\0');
    std::size_t have = 0;
    while (have < text.size()) {
        ssize_t n = read_some(f.fd, text.data() + have, text.size() - have);
        if (n < 0) return errno_code(errno);
        if (n == 0) break;
        have += static_cast<std::size_t>(n);
    }
    text.resize(have);
    auto d = parse_sidecar(text);
    if (!d) return asset_errc::checksum_malformed;
    out = *d;
    return {};
}

struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// Streams the file through SHA-256 in fixed chunks so multi-hundred-MiB assets cost no memory.
error_code hash_file(const fs::path& file, digest& out) {
    fd_guard f{::open(file.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) return errno == ENOENT ? error_code(asset_errc::asset_missing) : errno_code(errno);

    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
    if (!ctx) return boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
    const auto openssl_failed = boost::system::errc::make_error_code(boost::system::errc::function_not_supported);
    if (EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return openssl_failed;

    std::unique_ptr<unsigned char[]> buf(new unsigned char[64 * 1024]);
    for (;;) {
        ssize_t n = read_some(f.fd, buf.get(), 64 * 1024);
        if (n < 0) return errno_code(errno);
        if (n == 0) break;
        if (EVP_DigestUpdate(ctx.get(), buf.get(), static_cast<std::size_t>(n)) != 1) return openssl_failed;
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) return openssl_failed;
    return {};
}

const char* env_value(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

}  // namespace

std::filesystem::path vm_assets_dir() {
    if (const char* dir = env_value("MIMOBOX_VM_ASSETS_DIR")) return dir;
    if (const char* home = env_value("HOME")) return fs::path(home) / ".mimobox" / "assets";
    return {};
}

boost::system::result<std::filesystem::path> resolve_vm_assets_dir(const std::filesystem::path& preferred) {
    fs::path dir = preferred.empty() ? vm_assets_dir() : preferred;
    std::error_code fs_ec;
    if (dir.empty() || !fs::is_directory(dir, fs_ec)) return asset_errc::assets_dir_not_found;
    return dir;
}

boost::system::result<vm_assets> find_vm_assets(const std::filesystem::path& dir) {
    std::error_code fs_ec;
    vm_assets a;
    a.kernel = dir / "bzImage";
    if (!fs::is_regular_file(a.kernel, fs_ec)) a.kernel = dir / "vmlinux";
    a.initramfs = dir / "initramfs.cpio.gz";
    if (!fs::is_regular_file(a.kernel, fs_ec) || !fs::is_regular_file(a.initramfs, fs_ec))
        return asset_errc::asset_missing;
    return a;
}

boost::system::error_code verify_asset(const std::filesystem::path& file) {
    // The asset itself is checked first: its absence is the root cause, whatever the sidecar says.
    std::error_code fs_ec;
    if (file.empty() || !fs::is_regular_file(file, fs_ec)) return asset_errc::asset_missing;

    digest expected{};
    fs::path sidecar = file;
    sidecar += ".sha256";
    if (auto ec = read_sidecar(sidecar, expected)) return ec;

    digest actual{};
    if (auto ec = hash_file(file, actual)) return ec;
    if (actual != expected) return asset_errc::asset_integrity;
    return {};
}

boost::system::result<microvm_config> microvm_config_from_vm_assets(const vm_assets& assets, microvm_config base) {
    if (auto ec = verify_asset(assets.kernel)) return ec;
    if (auto ec = verify_asset(assets.initramfs)) return ec;
    base.kernel = assets.kernel;
    base.initramfs = assets.initramfs;
    return base;
}

boost::system::result<microvm_config> microvm_config_from_assets_dir(const std::filesystem::path& dir,
                                                                     microvm_config base) {
    auto resolved = resolve_vm_assets_dir(dir);
    if (!resolved) return resolved.error();
    auto found = find_vm_assets(*resolved);
    if (!found) return found.error();
    return microvm_config_from_vm_assets(*found, std::move(base));
}

}  // namespace mimobox::vm
