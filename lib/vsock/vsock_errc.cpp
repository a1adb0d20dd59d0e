#include "vsock/vsock_errc.hpp"

namespace mimobox::vsock {

namespace {
class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.vsock"; }
    std::string message(int ev) const override {
        switch (static_cast<vsock_errc>(ev)) {
        case vsock_errc::connection_refused: return "the guest refused the vsock connection";
        case vsock_errc::connection_reset: return "the guest reset the vsock connection";
        case vsock_errc::protocol_violation: return "the guest violated the vsock protocol; connection reset";
        case vsock_errc::connection_closed: return "the vsock connection is closed";
        case vsock_errc::link_broken: return "the serial line carrying vsock lost packet framing; all connections reset";
        }
        return "unknown mimobox.vsock error";
    }
};
}  // namespace

const boost::system::error_category& vsock_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace mimobox::vsock
