// What a vsock_stream holds: which VM (weakly: a stream does not keep a stopped VM's memory
// alive) and which connection. Every operation goes to the VM's strand.
#pragma once

#include "vsock/connection.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>

namespace mimobox::vm::detail {

class machine;

class vsock_channel {
public:
    vsock_channel(std::weak_ptr<machine> vm, boost::asio::any_io_executor strand, vsock::endpoint ep)
        : vm_(std::move(vm)), strand_(std::move(strand)), ep_(ep) {}
    vsock_channel(const vsock_channel&) = delete;
    vsock_channel& operator=(const vsock_channel&) = delete;
    ~vsock_channel() { release(); }

    /// Hands the connection back to the VM (vsock_host::release), once: later calls do nothing.
    void release();

    const std::weak_ptr<machine>& vm() const noexcept { return vm_; }
    const boost::asio::any_io_executor& executor() const noexcept { return strand_; }
    const vsock::endpoint& ends() const noexcept { return ep_; }
    bool closed = false;  // released

private:
    std::weak_ptr<machine> vm_;
    boost::asio::any_io_executor strand_;
    vsock::endpoint ep_;
};

}  // namespace mimobox::vm::detail
