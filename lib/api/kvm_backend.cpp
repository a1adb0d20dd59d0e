#include "mimobox/vm/kvm_backend.hpp"

#include "mimobox/vm/error.hpp"
#include "vmm/machine.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include <atomic>

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
void kvm_backend::initiate_prepare(void_handler h) { machine_->prepare(std::move(h)); }
void kvm_backend::initiate_restore(microvm_snapshot snapshot, void_handler h) { machine_->restore(snapshot.data(), std::move(h)); }
void kvm_backend::initiate_snapshot(boost::asio::any_completion_handler<void(error_code, microvm_snapshot)> h) {
    machine_->snapshot(std::move(h));
}
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

std::atomic<std::uint64_t> next_stream_wait_id{1};

// Per-operation cancellation of a connect or accept: wired here, in the initiating thread, so a
// cancellation emitted right after initiation is not lost; the removal runs on the VM's strand,
// after the registration (posted first).
template <class Handler>
std::uint64_t cancel_on_signal(const std::shared_ptr<detail::machine>& m, Handler& h) {
    const std::uint64_t id = next_stream_wait_id.fetch_add(1, std::memory_order_relaxed);
    auto slot = boost::asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
        slot.assign([weak = std::weak_ptr<detail::machine>(m), id](boost::asio::cancellation_type) {
            if (auto vm = weak.lock())
                vm->with_vsock([id](vmm::vsock_host* host) {
                    if (host) host->cancel_wait(id);
                });
        });
    }
    return id;
}
}  // namespace

void kvm_backend::initiate_vsock_connect(std::uint32_t guest_port, stream_handler h) {
    const auto id = cancel_on_signal(machine_, h);
    machine_->with_vsock([port = guest_port, id, h = std::move(h), ex = get_executor()](vmm::vsock_host* host) mutable {
        if (host) host->connect(port, id, std::move(h));
        else no_device(ex, std::move(h));
    });
}

void kvm_backend::initiate_vsock_accept(std::uint32_t host_port, stream_handler h) {
    const auto id = cancel_on_signal(machine_, h);
    machine_->with_vsock([port = host_port, id, h = std::move(h), ex = get_executor()](vmm::vsock_host* host) mutable {
        if (host) host->accept(port, id, std::move(h));
        else no_device(ex, std::move(h));
    });
}

}  // namespace mimobox::vm
