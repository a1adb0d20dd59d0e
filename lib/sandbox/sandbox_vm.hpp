// The VM as the sandbox layer uses it: boot, stop, vsock connections to the agent. The real one
// wraps a kvm_backend; the sandbox layer's unit tests substitute one whose connections are
// sockets to the real guest agent code (test/support/agent_fixture.hpp), so every sandbox
// operation is tested without KVM.
#pragma once

#include "mimobox/vm/kvm_backend.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <optional>

namespace mimobox::vm::detail {

class sandbox_vm {
public:
    using error_code = boost::system::error_code;
    template <class... Ts>
    using handler = boost::asio::any_completion_handler<void(error_code, Ts...)>;

    sandbox_vm() = default;
    sandbox_vm(const sandbox_vm&) = delete;
    sandbox_vm& operator=(const sandbox_vm&) = delete;
    virtual ~sandbox_vm() = default;

    /// The strand every sandbox coroutine and the VM's devices run on.
    virtual boost::asio::any_io_executor get_executor() const = 0;
    virtual kvm_lifecycle state() const = 0;
    /// The kvm_backend underneath, if there is one (not in unit tests).
    virtual kvm_backend* backend() noexcept { return nullptr; }

    // The kvm_backend operations of the same names, with their cancellation and lifetimes.
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_boot(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto h) { boot(std::move(h)); }, token);
    }
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_stop(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto h) { stop(std::move(h)); }, token);
    }
    template <boost::asio::completion_token_for<void(error_code, vm_stop_info)> Token>
    auto async_wait_stopped(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, vm_stop_info)>([this](auto h) { wait_stopped(std::move(h)); },
                                                                                  token);
    }
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_pause(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto h) { pause(std::move(h)); }, token);
    }
    template <boost::asio::completion_token_for<void(error_code)> Token>
    auto async_resume(Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code)>([this](auto h) { resume(std::move(h)); }, token);
    }
    template <boost::asio::completion_token_for<void(error_code, vsock_stream)> Token>
    auto async_vsock_connect(std::uint32_t guest_port, Token&& token) {
        return boost::asio::async_initiate<Token, void(error_code, vsock_stream)>(
            [this, guest_port](auto h) { vsock_connect(guest_port, std::move(h)); }, token);
    }

protected:
    virtual void boot(handler<> h) = 0;
    virtual void stop(handler<> h) = 0;
    virtual void wait_stopped(handler<vm_stop_info> h) = 0;
    virtual void pause(handler<> h) = 0;
    virtual void resume(handler<> h) = 0;
    virtual void vsock_connect(std::uint32_t guest_port, handler<vsock_stream> h) = 0;
};

/// The production sandbox_vm: a KVM microVM.
class kvm_sandbox_vm final : public sandbox_vm {
public:
    kvm_sandbox_vm(boost::asio::any_io_executor executor, microvm_config config)
        : backend_(std::move(executor), std::move(config)) {}
    /// A VM that is restored from `snapshot` where others boot.
    kvm_sandbox_vm(boost::asio::any_io_executor executor, microvm_config config, microvm_snapshot snapshot)
        : backend_(std::move(executor), std::move(config)), restore_from_(std::move(snapshot)) {}
    /// A VM already made (a restore_pool's prepared shell) that is restored from `snapshot`.
    kvm_sandbox_vm(kvm_backend backend, microvm_snapshot snapshot)
        : backend_(std::move(backend)), restore_from_(std::move(snapshot)) {}

    boost::asio::any_io_executor get_executor() const override { return backend_.get_executor(); }
    kvm_lifecycle state() const override { return backend_.state(); }
    kvm_backend* backend() noexcept override { return &backend_; }

protected:
    void boot(handler<> h) override {
        if (restore_from_) return backend_.async_restore(*restore_from_, std::move(h));
        backend_.async_boot(std::move(h));
    }
    void stop(handler<> h) override { backend_.async_stop(std::move(h)); }
    void wait_stopped(handler<vm_stop_info> h) override { backend_.async_wait_stopped(std::move(h)); }
    void pause(handler<> h) override { backend_.async_pause(std::move(h)); }
    void resume(handler<> h) override { backend_.async_resume(std::move(h)); }
    void vsock_connect(std::uint32_t guest_port, handler<vsock_stream> h) override {
        backend_.async_vsock_connect(guest_port, std::move(h));
    }

private:
    kvm_backend backend_;
    std::optional<microvm_snapshot> restore_from_;
};

}  // namespace mimobox::vm::detail
