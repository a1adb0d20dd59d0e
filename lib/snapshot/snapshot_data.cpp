#include "snapshot/snapshot_data.hpp"

#include "mimobox/vm/microvm_snapshot.hpp"
#include "snapshot/memory_image.hpp"
#include "snapshot/snapshot_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>

namespace mimobox::vm {

namespace detail {

boost::system::result<std::shared_ptr<const snapshot_data>> make_snapshot_data(snapshot::state_blob blob, kvm::unique_fd memory,
                                                                               bool verify_memory) {
    auto machine = snapshot::decode_machine_state(blob.body);
    if (!machine) return machine.error();
    const auto& meta = blob.metadata;
    if (meta.vcpu_count != machine->vcpu_count || meta.memory_bytes != machine->memory_bytes ||
        machine->memory_bytes % (1u << 20) != 0 || machine->vsock_link > static_cast<std::uint8_t>(vsock_link::com2_uart))
        return snapshot_errc::corrupt_state;
    snapshot::memory_image image;
    image.size = meta.memory_bytes;
    image.chunk_bytes = meta.memory_chunk_bytes;
    image.chunk_sha256 = meta.memory_chunk_sha256;
    if (verify_memory)
        if (auto ec = snapshot::verify_memory_image(memory.get(), image)) return ec;
    auto ranges = snapshot::data_ranges(memory.get(), 0, meta.memory_bytes);
    if (!ranges) return ranges.error();
    auto data = std::make_shared<snapshot_data>();
    for (auto [first, last] : *ranges) data->memory_data_bytes += last - first;
    data->blob = std::move(blob);
    data->machine = std::move(*machine);
    data->memory = std::move(memory);
    return std::shared_ptr<const snapshot_data>(std::move(data));
}

}  // namespace detail

microvm_snapshot::microvm_snapshot(std::shared_ptr<const detail::snapshot_data> data) noexcept : data_(std::move(data)) {}

std::uint32_t microvm_snapshot::vcpu_count() const noexcept { return data_ ? data_->machine.vcpu_count : 0; }
std::uint32_t microvm_snapshot::memory_mib() const noexcept {
    return data_ ? static_cast<std::uint32_t>(data_->machine.memory_bytes >> 20) : 0;
}
vsock_link microvm_snapshot::vsock() const noexcept {
    return data_ ? static_cast<vsock_link>(data_->machine.vsock_link) : vsock_link::virtio_pci;
}
std::uint64_t microvm_snapshot::memory_data_bytes() const noexcept { return data_ ? data_->memory_data_bytes : 0; }
std::uint64_t microvm_snapshot::memory_touched_bytes() const noexcept { return data_ ? data_->memory_touched_bytes : 0; }
int microvm_snapshot::memory_fd() const noexcept { return data_ ? data_->memory.get() : -1; }

std::vector<std::uint8_t> microvm_snapshot::to_bytes() const { return data_ ? snapshot::to_bytes(data_->blob) : std::vector<std::uint8_t>{}; }

boost::system::result<microvm_snapshot> microvm_snapshot::from_bytes(std::span<const std::uint8_t> state, int memory_fd) {
    auto blob = snapshot::from_bytes(state);
    if (!blob) return blob.error();
    kvm::unique_fd fd(::fcntl(memory_fd, F_DUPFD_CLOEXEC, 0));
    if (!fd) return boost::system::error_code(errno, boost::system::system_category());
    auto data = detail::make_snapshot_data(std::move(*blob), std::move(fd), true);
    if (!data) return data.error();
    return microvm_snapshot(std::move(*data));
}

boost::system::error_code microvm_snapshot::save(const std::filesystem::path& dir) const {
    if (!data_) return snapshot_errc::not_a_snapshot;
    auto written = snapshot::write_snapshot_dir(dir, data_->blob, data_->memory.get());
    return written ? boost::system::error_code{} : written.error();
}

boost::system::result<microvm_snapshot> microvm_snapshot::load(const std::filesystem::path& dir) {
    auto loaded = snapshot::open_snapshot_dir(dir);  // checks the state and the memory file
    if (!loaded) return loaded.error();
    kvm::unique_fd fd(std::exchange(loaded->memory_fd, -1));
    auto data = detail::make_snapshot_data(std::move(loaded->state), std::move(fd), false);
    if (!data) return data.error();
    return microvm_snapshot(std::move(*data));
}

}  // namespace mimobox::vm
