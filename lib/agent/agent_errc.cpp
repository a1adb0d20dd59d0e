#include "agent/agent_errc.hpp"

namespace mimobox::agent {

namespace {
class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.agent"; }
    std::string message(int ev) const override {
        switch (static_cast<agent_errc>(ev)) {
        case agent_errc::frame_too_large: return "agent frame exceeds the size limit";
        case agent_errc::unknown_frame_kind: return "agent frame of unknown kind";
        case agent_errc::truncated_frame: return "agent stream ended inside a frame";
        case agent_errc::malformed_message: return "agent message is not valid for the protocol";
        case agent_errc::version_mismatch: return "agent protocol version mismatch";
        case agent_errc::unexpected_frame: return "agent frame kind not allowed in this direction";
        }
        return "unknown mimobox.agent error";
    }
};
}  // namespace

const boost::system::error_category& agent_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace mimobox::agent
