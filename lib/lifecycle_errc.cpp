#include "mimobox/vm/lifecycle_errc.hpp"

namespace mimobox::vm {

namespace {
class lifecycle_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.lifecycle"; }
    std::string message(int ev) const override {
        switch (static_cast<lifecycle_errc>(ev)) {
        case lifecycle_errc::invalid_state: return "operation not allowed in the VM's current state";
        case lifecycle_errc::vm_stopped: return "the VM stopped before the operation completed";
        }
        return "unknown mimobox.lifecycle error";
    }
};
}  // namespace

const boost::system::error_category& lifecycle_category() noexcept {
    static const lifecycle_category_impl instance;
    return instance;
}

}  // namespace mimobox::vm
