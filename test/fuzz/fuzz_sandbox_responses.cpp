// libFuzzer: what the sandbox layer keeps of a hostile guest's answers. Bytes from the guest
// go through the host's response reader, as an exec or a file read consumes them: output into
// per-stream buffers under a cap (append_capped), file data all-or-nothing under a cap
// (fits_under_cap). Invariants (a violation traps): no buffer ever passes its cap; every
// response the reader yields is within the protocol's limits (entry names are single path
// components, at most max_entries of them, error messages at most max_error_message bytes,
// exit codes, signals and modes in range).
#include "agent/response_reader.hpp"
#include "fuzz_reader.hpp"
#include "sandbox/output_cap.hpp"

#include <algorithm>

using namespace mimobox;
using namespace mimobox::agent;

namespace {

void check(const response& r) {
    if (auto* l = std::get_if<listing_response>(&r)) {
        if (l->entries.size() > listing_response::max_entries) __builtin_trap();
        for (const auto& e : l->entries) {
            const auto& n = e.name;
            if (n.empty() || n.size() > max_entry_name || n == "." || n == ".." || n.find('/') != std::string::npos ||
                n.find('\0') != std::string::npos)
                __builtin_trap();
        }
    } else if (auto* e = std::get_if<error_response>(&r)) {
        if (e->message.size() > max_error_message) __builtin_trap();
    } else if (auto* x = std::get_if<exit_response>(&r)) {
        if (x->exit_code < -1 || x->exit_code > 255 || x->signal < 0 || x->signal > 64) __builtin_trap();
    } else if (auto* s = std::get_if<stat_response>(&r)) {
        if (s->mode > 07777) __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::size_t chunk = 1 + data[0] % 97;
    const std::uint64_t output_cap = data[1] * 37u;   // 0 .. 9435 bytes per stream
    const std::uint64_t file_cap = data[2] * 131u;    // 0 .. 33405 bytes
    std::span<const std::uint8_t> in(data + 3, size - 3);

    std::string out, err, file;
    bool file_too_large = false;
    fuzz::read_in_chunks(in, chunk, [&](const inbound& item) {
        if (auto* d = std::get_if<data_chunk>(&item)) {
            const std::string_view bytes(reinterpret_cast<const char*>(d->bytes.data()), d->bytes.size());
            if (d->kind == frame_kind::stdout_data) (void)vm::detail::append_capped(out, bytes, output_cap);
            else if (d->kind == frame_kind::stderr_data) (void)vm::detail::append_capped(err, bytes, output_cap);
            else if (!file_too_large && vm::detail::fits_under_cap(file, bytes.size(), file_cap)) file.append(bytes);
            else file_too_large = true;
            if (out.size() > output_cap || err.size() > output_cap || file.size() > file_cap) __builtin_trap();
        } else if (auto* r = std::get_if<response>(&item)) {
            check(*r);
        }
    });
    return 0;
}
