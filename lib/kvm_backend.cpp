#include "mimobox/vm/kvm_backend.hpp"

#include "vmm/machine.hpp"

namespace mimobox::vm {

kvm_backend::kvm_backend(executor_type executor, microvm_config config)
    : machine_(std::make_shared<detail::machine>(std::move(executor), std::move(config))) {}

kvm_backend::kvm_backend(kvm_backend&&) noexcept = default;

kvm_backend& kvm_backend::operator=(kvm_backend&& other) noexcept {
    if (this != &other) {
        if (machine_) machine_->request_stop();
        machine_ = std::move(other.machine_);
    }
    return *this;
}

kvm_backend::~kvm_backend() {
    if (machine_) machine_->request_stop();
}

kvm_backend::executor_type kvm_backend::get_executor() const noexcept { return machine_->get_executor(); }
const microvm_config& kvm_backend::config() const noexcept { return machine_->config(); }
kvm_lifecycle kvm_backend::state() const noexcept { return machine_->state(); }
std::string kvm_backend::console_output() const { return machine_->console_output(); }
void kvm_backend::set_console_callback(std::function<void(std::string_view)> cb) {
    machine_->set_console_callback(std::move(cb));
}

void kvm_backend::initiate_boot(void_handler h) { machine_->boot(std::move(h)); }
void kvm_backend::initiate_pause(void_handler h) { machine_->pause(std::move(h)); }
void kvm_backend::initiate_resume(void_handler h) { machine_->resume(std::move(h)); }
void kvm_backend::initiate_stop(void_handler h) { machine_->stop(std::move(h)); }
void kvm_backend::initiate_wait_stopped(boost::asio::any_completion_handler<void(error_code, vm_stop_info)> h) {
    machine_->wait_stopped(std::move(h));
}
void kvm_backend::initiate_wait_console(std::string text, void_handler h) {
    machine_->wait_console(std::move(text), std::move(h));
}

}  // namespace mimobox::vm
