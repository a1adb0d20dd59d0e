// A vsock_stream's connection on a VM's vsock device: which VM (weakly: a stream does not keep a
// stopped VM's memory alive) and which connection. Every operation goes to the VM's strand.
#pragma once

#include "api/vsock_channel.hpp"
#include "vsock/connection.hpp"

#include <memory>

namespace mimobox::vm::detail {

class machine;

class vm_vsock_channel final : public vsock_channel {
public:
    vm_vsock_channel(std::weak_ptr<machine> vm, boost::asio::any_io_executor strand, vsock::endpoint ep)
        : vm_(std::move(vm)), strand_(std::move(strand)), ep_(ep) {}
    ~vm_vsock_channel() override { close(); }

    boost::asio::any_io_executor executor() const override { return strand_; }
    bool is_open() const override { return !closed_ && !vm_.expired(); }
    std::uint32_t host_port() const override { return ep_.host_port; }
    std::uint32_t guest_port() const override { return ep_.guest_port; }
    void read(std::vector<boost::asio::mutable_buffer> buffers, io_handler handler) override;
    void write(std::vector<boost::asio::const_buffer> buffers, io_handler handler) override;
    void shutdown_write() override;
    /// Hands the connection back to the VM (vsock_host::release).
    void close() override;

private:
    template <class Buffers>
    void start_io(Buffers buffers, io_handler handler, bool read);

    std::weak_ptr<machine> vm_;
    boost::asio::any_io_executor strand_;
    vsock::endpoint ep_;
    bool closed_ = false;
};

}  // namespace mimobox::vm::detail
