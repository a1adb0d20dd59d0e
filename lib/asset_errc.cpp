#include "mimobox/vm/asset_errc.hpp"

namespace mimobox::vm {

namespace {
class asset_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.asset"; }
    std::string message(int ev) const override {
        switch (static_cast<asset_errc>(ev)) {
        case asset_errc::assets_dir_not_found: return "the VM assets directory does not exist";
        case asset_errc::asset_missing: return "a VM asset (kernel or initramfs) is missing";
        case asset_errc::checksum_missing: return "the VM asset has no .sha256 sidecar";
        case asset_errc::checksum_malformed: return "the VM asset's .sha256 sidecar is malformed";
        case asset_errc::asset_integrity: return "the VM asset does not match its SHA-256 checksum";
        }
        return "unknown mimobox.asset error";
    }
};
}  // namespace

const boost::system::error_category& asset_category() noexcept {
    static const asset_category_impl instance;
    return instance;
}

}  // namespace mimobox::vm
