#include "mimobox/vm/kvm_backend.hpp"

#include "mimobox/vm/lifecycle_errc.hpp"
#include "vmm/machine.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>

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

namespace {
// VM without a vsock device (not booted): complete with invalid_state, through post.
void no_device(kvm_backend::executor_type ex, boost::asio::any_completion_handler<void(boost::system::error_code, vsock_stream)> h) {
    boost::asio::post(ex, boost::asio::append(std::move(h), boost::system::error_code(lifecycle_errc::invalid_state), vsock_stream{}));
}
}  // namespace

void kvm_backend::initiate_vsock_connect(std::uint32_t guest_port, stream_handler h) {
    machine_->with_vsock([port = guest_port, h = std::move(h), ex = get_executor()](vmm::vsock_host* host) mutable {
        if (host) host->connect(port, std::move(h));
        else no_device(ex, std::move(h));
    });
}

void kvm_backend::initiate_vsock_accept(std::uint32_t host_port, stream_handler h) {
    machine_->with_vsock([port = host_port, h = std::move(h), ex = get_executor()](vmm::vsock_host* host) mutable {
        if (host) host->accept(port, std::move(h));
        else no_device(ex, std::move(h));
    });
}

}  // namespace mimobox::vm
