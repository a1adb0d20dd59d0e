// A virtio device that only records what its transport tells it, for transport tests.
#pragma once

#include "virtio/virtio_device.hpp"

#include <vector>

namespace mimobox::test {

struct fake_virtio_device final : virtio::virtio_device {
    std::uint64_t offered = 1;  // one device feature bit
    int activations = 0, resets = 0;
    std::vector<std::size_t> notified;
    std::size_t activated_queues = 0;
    std::uint32_t device_id() const override { return 19; }
    std::uint64_t device_features() const override { return offered; }
    std::size_t queue_count() const override { return 2; }
    std::uint16_t queue_max_size(std::size_t) const override { return 8; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override {
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(0xa0 + offset + i);
    }
    void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
    boost::system::error_code activate(std::uint64_t, std::vector<virtio::split_queue> q) override {
        ++activations;
        activated_queues = q.size();
        return {};
    }
    void notify(std::size_t q) override { notified.push_back(q); }
    void reset() override { ++resets; }
};

}  // namespace mimobox::test
