#include "agent/response_reader.hpp"

namespace mimobox::agent {

void response_reader::feed(std::span<const std::uint8_t> bytes) {
    while (!bytes.empty() && !error_) {
        const auto used = decoder_.feed(bytes);
        bytes = bytes.subspan(used);
        if (decoder_.error()) {
            error_ = decoder_.error();
            return;
        }
        auto f = decoder_.next();
        if (!f) continue;  // used everything without completing a frame
        switch (f->kind) {
        case frame_kind::stdout_data:
        case frame_kind::stderr_data:
        case frame_kind::file_data:
            ready_.push_back(data_chunk{f->kind, std::move(f->body)});
            break;
        case frame_kind::end_of_data:
            if (f->body.size() != 1) {
                error_ = agent_errc::malformed_message;
                return;
            }
            ready_.push_back(data_end{static_cast<frame_kind>(f->body[0])});
            break;
        case frame_kind::message: {
            auto v = parse_message(std::string_view(reinterpret_cast<const char*>(f->body.data()), f->body.size()));
            if (!v) {
                error_ = v.error();
                return;
            }
            auto r = response_from_json(*v);
            if (!r) {
                error_ = r.error();
                return;
            }
            ready_.push_back(std::move(*r));
            break;
        }
        default:
            error_ = agent_errc::unexpected_frame;  // stdin data travels only host -> guest
            return;
        }
    }
}

boost::system::result<std::optional<inbound>> response_reader::next() {
    // Items decoded before an error are still delivered, in order; then the error.
    if (!ready_.empty()) {
        inbound item = std::move(ready_.front());
        ready_.pop_front();
        return std::optional<inbound>(std::move(item));
    }
    if (error_) return error_;
    return std::optional<inbound>{};
}

boost::system::error_code response_reader::finish() const {
    if (error_) return error_;
    return decoder_.finish();
}

void encode_request(std::vector<std::uint8_t>& out, const request& r) {
    const auto text = serialize(to_json(r));
    encode_frame(out, frame_kind::message, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

void encode_data(std::vector<std::uint8_t>& out, frame_kind kind, std::span<const std::uint8_t> data) {
    while (!data.empty()) {
        const auto n = std::min<std::size_t>(data.size(), max_data_chunk);
        encode_frame(out, kind, data.first(n));
        data = data.subspan(n);
    }
}

void encode_end(std::vector<std::uint8_t>& out, frame_kind kind) {
    const auto which = static_cast<std::uint8_t>(kind);
    encode_frame(out, frame_kind::end_of_data, std::span(&which, 1));
}

}  // namespace mimobox::agent
