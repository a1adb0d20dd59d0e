#include "agent/agent_errc.hpp"

#include "common/error_table.hpp"

namespace mimobox::agent {

namespace {
constexpr common::error_row rows[] = {
    {static_cast<int>(agent_errc::frame_too_large), "agent frame exceeds the size limit"},
    {static_cast<int>(agent_errc::unknown_frame_kind), "agent frame of unknown kind"},
    {static_cast<int>(agent_errc::truncated_frame), "agent stream ended inside a frame"},
    {static_cast<int>(agent_errc::malformed_message), "agent message is not valid for the protocol"},
    {static_cast<int>(agent_errc::version_mismatch), "agent protocol version mismatch"},
    {static_cast<int>(agent_errc::unexpected_frame), "agent frame kind not allowed in this direction"},
};
}  // namespace

const boost::system::error_category& agent_category() noexcept {
    static const common::table_category instance("mimobox.agent", rows);
    return instance;
}

}  // namespace mimobox::agent
