// Capture and restore of a machine (kvm-reference.md §6; decision 0027). Both run on the VM's
// strand: a capture with every vCPU thread parked (the VM is paused), a restore before any
// vCPU thread exists.
#include "vmm/machine.hpp"

#include "boot/cpuid.hpp"
#include "mimobox/vm/error.hpp"
#include "mimobox/vm/version.hpp"
#include "snapshot/memory_image.hpp"

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

namespace mimobox::vm::detail {

namespace asio = boost::asio;
using snapshot::machine_state;
using snapshot::vcpu_state;

namespace {

boost::system::error_code last_error() { return {errno, boost::system::system_category()}; }

std::string vendor_of(std::span<const kvm_cpuid_entry2> cpuid) {
    for (const auto& e : cpuid) {
        if (e.function != 0) continue;
        char v[12];
        std::memcpy(v, &e.ebx, 4);
        std::memcpy(v + 4, &e.edx, 4);
        std::memcpy(v + 8, &e.ecx, 4);
        return std::string(v, 12);
    }
    return {};
}

const kvm_cpuid_entry2* find_leaf(std::span<const kvm_cpuid_entry2> cpuid, std::uint32_t function, std::uint32_t index) {
    for (const auto& e : cpuid)
        if (e.function == function && e.index == index) return &e;
    return nullptr;
}

// The guest may have used any feature it was shown; a host that lacks one cannot run it. The
// feature leaves are compared bit by bit against what this host would show a booted guest.
boost::system::error_code check_cpu(const snapshot::snapshot_metadata& meta, std::span<const kvm_cpuid_entry2> saved,
                                    std::span<const kvm_cpuid_entry2> host_supported, unsigned vcpu_count) {
    if (meta.cpu_vendor != vendor_of(host_supported) || vendor_of(saved) != meta.cpu_vendor) return snapshot_errc::cpu_mismatch;
    const auto host = boot::normalize_cpuid(host_supported, 0, vcpu_count);
    struct feature_leaf {
        std::uint32_t function, index;
    };
    for (auto [function, index] : {feature_leaf{1, 0}, feature_leaf{7, 0}, feature_leaf{0xd, 1}, feature_leaf{0x80000001, 0}}) {
        const auto* s = find_leaf(saved, function, index);
        if (!s) continue;
        const auto* h = find_leaf(host, function, index);
        if (!h) return snapshot_errc::cpu_mismatch;
        const bool ebx_is_features = function == 7;  // leaf 1's ebx holds APIC ids, not features
        if ((s->ecx & ~h->ecx) || (s->edx & ~h->edx) || (ebx_is_features && (s->ebx & ~h->ebx)) ||
            (function == 0xd && (s->eax & ~h->eax)))
            return snapshot_errc::cpu_mismatch;
    }
    return {};
}

// KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it read: skip that
// one and go on, so one MSR this host refuses does not cost the others.
boost::system::result<std::vector<kvm_msr_entry>> read_msrs(const kvm::vcpu& cpu, const std::vector<std::uint32_t>& indices) {
    std::vector<kvm_msr_entry> want(indices.size());
    for (std::size_t i = 0; i < indices.size(); ++i) want[i].index = indices[i];
    std::vector<kvm_msr_entry> got;
    for (std::size_t at = 0; at < want.size();) {
        auto n = cpu.get_msrs(std::span(want).subspan(at));
        if (!n) return n.error();
        got.insert(got.end(), want.begin() + at, want.begin() + at + *n);
        at += *n + 1;
    }
    // TSC_DEADLINE last: writing it arms the LAPIC timer against the TSC restored before it.
    // A deadline of 0 (disarmed, or fired while paused) becomes "now", so a guest whose timer
    // was due gets its interrupt instead of waiting forever (Firecracker does the same).
    std::uint64_t tsc = 0;
    for (auto& m : got)
        if (m.index == 0x10) tsc = m.data;
    std::stable_partition(got.begin(), got.end(), [](const kvm_msr_entry& m) { return m.index != snapshot::msr_tsc_deadline; });
    if (!got.empty() && got.back().index == snapshot::msr_tsc_deadline && got.back().data == 0) got.back().data = tsc;
    return got;
}

}  // namespace

// ---- capture

void machine::snapshot(snapshot_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (self->state() != kvm_lifecycle::paused)
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state), microvm_snapshot());
        auto snap = self->capture();
        if (!snap) return self->complete(std::move(h), snap.error(), microvm_snapshot());
        self->complete(std::move(h), error_code{}, microvm_snapshot(std::move(*snap)));
    });
}

boost::system::result<std::shared_ptr<const snapshot_data>> machine::capture() {
    if (config_.vsock == vsock_link::com2_uart) return snapshot_errc::unsupported_vm;
    // 1. Finish what each vCPU was doing: an I/O exit we served is completed inside KVM_RUN,
    //    and immediate_exit makes that KVM_RUN return before the guest runs on. The threads
    //    are joined (paused), so calling KVM_RUN from here is safe.
    for (auto& slot : vcpus_) {
        std::atomic_ref<std::uint8_t>(slot->cpu.run_state().immediate_exit).store(1, std::memory_order_release);
        if (auto ec = slot->cpu.run(); ec && ec != boost::system::errc::interrupted) return ec;
    }
    machine_state ms;
    ms.vcpu_count = config_.vcpu_count;
    ms.memory_bytes = std::uint64_t(config_.memory_mib) << 20;
    ms.vsock_link = static_cast<std::uint8_t>(config_.vsock);
    ms.vsock_cid = config_.vsock_cid;
    // 2. Devices. Connections are not saved: a restored VM starts with none.
    snapshot::state_writer devices;
    serial_->save(devices);
    i8042_->save(devices);
    if (auto ec = vsock_->save(devices)) return ec;
    ms.devices = devices.take();
    // 3. vCPUs, in the order of kvm-reference.md §6.
    auto msr_list = kvm_->msr_index_list();
    if (!msr_list) return msr_list.error();
    std::vector<std::uint32_t> saveable;
    std::copy_if(msr_list->begin(), msr_list->end(), std::back_inserter(saveable), snapshot::msr_is_saveable);
    for (auto& slot : vcpus_) {
        auto& cpu = slot->cpu;
        vcpu_state v;
        v.cpuid = slot->cpuid;
        auto mp = cpu.get_mp_state();
        auto regs = cpu.get_regs();
        auto sregs = cpu.get_sregs();
        auto xsave = cpu.get_xsave();
        auto xcrs = cpu.get_xcrs();
        auto dregs = cpu.get_debugregs();
        auto lapic = cpu.get_lapic();
        auto khz = cpu.get_tsc_khz();
        auto msrs = read_msrs(cpu, saveable);
        auto events = cpu.get_vcpu_events();
        for (auto ec : {mp.error(), regs.error(), sregs.error(), xsave.error(), xcrs.error(), dregs.error(),
                        lapic.error(), khz.error(), msrs.error(), events.error()})
            if (ec) return ec;
        v.mp_state = *mp;
        v.regs = *regs;
        v.sregs = *sregs;
        std::memcpy(v.xsave.data(), xsave->region, sizeof v.xsave);
        v.xcrs = *xcrs;
        v.debugregs = *dregs;
        v.lapic = *lapic;
        v.tsc_khz = *khz;
        v.msrs = std::move(*msrs);
        v.events = *events;
        ms.vcpus.push_back(std::move(v));
    }
    // 4. The VM: PIT, kvmclock, the PICs and the IOAPIC.
    auto pit = vm_->get_pit2();
    if (!pit) return pit.error();
    auto clock = vm_->get_clock();
    if (!clock) return clock.error();
    ms.vm.pit = *pit;
    ms.vm.clock = *clock;
    for (std::uint32_t chip = 0; chip < 3; ++chip) {
        auto c = vm_->get_irqchip(chip);
        if (!c) return c.error();
        ms.vm.irqchips[chip] = *c;
    }
    // 5. Memory, into a sealed memfd: only pages the guest touched and left non-zero.
    kvm::unique_fd memfd(::memfd_create("mimobox-snapshot-memory", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd) return last_error();
    std::vector<snapshot::memory_source> sources;
    std::uint64_t file_offset = 0;
    for (const auto& region : memory_.regions()) {
        snapshot::memory_source src;
        src.bytes = std::span(reinterpret_cast<const std::uint8_t*>(region.backing.data()), region.backing.size());
        if (restored_from_) {
            auto ranges = snapshot::data_ranges(restored_from_->memory.get(), file_offset, region.backing.size());
            if (!ranges) return ranges.error();
            src.file_backed = std::move(*ranges);
        }
        file_offset += region.backing.size();
        sources.push_back(std::move(src));
    }
    auto image = snapshot::write_memory_image(memfd.get(), sources);
    if (!image) return image.error();
    if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) return last_error();

    snapshot::state_blob blob;
    auto& meta = blob.metadata;
    meta.vmm_version = version_string;
    meta.vcpu_count = ms.vcpu_count;
    meta.memory_bytes = ms.memory_bytes;
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();
    meta.cpu_vendor = vendor_of(*supported);
    for (const auto& e : vcpus_.front()->cpuid)
        meta.cpuid.push_back(snapshot::cpuid_leaf{e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
    meta.devices = {"serial:com1", "i8042", config_.vsock == vsock_link::virtio_mmio ? "virtio-mmio:vsock" : "virtio-pci:vsock"};
    meta.memory_chunk_bytes = image->chunk_bytes;
    meta.memory_chunk_sha256 = std::move(image->chunk_sha256);
    blob.body = snapshot::encode_machine_state(ms);
    auto data = std::make_shared<snapshot_data>();
    data->blob = std::move(blob);
    data->machine = std::move(ms);
    data->memory = std::move(memfd);
    data->memory_data_bytes = image->data_bytes;
    data->memory_touched_bytes = image->touched_bytes;
    return std::shared_ptr<const snapshot_data>(std::move(data));
}

// ---- restore

void machine::restore(std::shared_ptr<const snapshot_data> snap, void_handler h) {
    asio::post(strand_, [self = shared_from_this(), snap = std::move(snap), h = std::move(h)]() mutable {
        if (!is_valid_transition(self->state(), kvm_lifecycle::booting))
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        if (!snap) return self->complete(std::move(h), error_code(snapshot_errc::not_a_snapshot));
        self->set_state(kvm_lifecycle::booting);
        if (auto ec = self->build_restored(*snap)) {
            self->fail_build(ec);
            return self->complete(std::move(h), ec);
        }
        self->restored_from_ = std::move(snap);
        self->vsock_->start(self);
        self->vsock_->after_restore();
        self->start_vcpus();
        self->set_state(kvm_lifecycle::running);
        self->complete(std::move(h), error_code{});
    });
}

void machine::prepare(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (self->state() != kvm_lifecycle::created || self->shell_ready_)
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        if (auto ec = self->build_shell()) {
            self->fail_build(ec);
            return self->complete(std::move(h), ec);
        }
        self->shell_ready_ = true;
        self->complete(std::move(h), error_code{});
    });
}

machine::error_code machine::build_shell() {
    if (config_.vsock == vsock_link::com2_uart) return snapshot_errc::unsupported_vm;
    if (config_.vcpu_count == 0) return microvm_errc::zero_vcpus;
    if (config_.memory_mib == 0) return microvm_errc::memory_too_small;
    if (auto ec = create_vm()) return ec;
    if (auto ec = create_devices()) return ec;
    return create_vcpus([](unsigned) { return std::vector<kvm_cpuid_entry2>(); }, false);
}

machine::error_code machine::build_restored(const snapshot_data& snap) {
    const auto& ms = snap.machine;
    // The shape comes from the caller's config and must be the snapshot's: nothing is resized
    // to fit (checked before KVM is touched, so a wrong snapshot costs nothing).
    if (ms.vcpu_count != config_.vcpu_count || ms.memory_bytes != (std::uint64_t(config_.memory_mib) << 20) ||
        ms.vsock_link != static_cast<std::uint8_t>(config_.vsock))
        return snapshot_errc::shape_mismatch;
    if (config_.vsock == vsock_link::com2_uart) return snapshot_errc::unsupported_vm;
    struct stat st {};
    if (::fstat(snap.memory.get(), &st) != 0) return last_error();
    if (static_cast<std::uint64_t>(st.st_size) < ms.memory_bytes) return snapshot_errc::truncated;  // would SIGBUS

    if (!shell_ready_)
        if (auto ec = create_vm()) return ec;
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();
    if (auto ec = check_cpu(snap.blob.metadata, ms.vcpus.front().cpuid, *supported, config_.vcpu_count)) return ec;
    // Guest RAM is the memory file, copy-on-write: pages are read when the guest touches them.
    const int memfd = snap.memory.get();
    if (auto ec = add_ram([memfd](std::uint64_t offset, std::uint64_t size) { return memory::mapping::file_private(memfd, size, offset); }))
        return ec;
    if (!shell_ready_) {
        if (auto ec = create_devices()) return ec;
        if (auto ec = create_vcpus([&](unsigned i) { return ms.vcpus[i].cpuid; }, false)) return ec;
    } else {
        for (std::size_t i = 0; i < vcpus_.size(); ++i) {
            if (auto ec = vcpus_[i]->cpu.set_cpuid(ms.vcpus[i].cpuid)) return ec;
            vcpus_[i]->cpuid = ms.vcpus[i].cpuid;
        }
    }

    // Devices, from their own bytes; each checks what it reads.
    snapshot::state_reader devices(ms.devices);
    if (auto ec = serial_->restore(devices)) return ec;
    if (auto ec = i8042_->restore(devices)) return ec;
    if (auto ec = vsock_->restore(devices)) return ec;
    devices.expect_end();
    if (devices.failed()) return devices.error();

    // vCPUs, in the order of kvm-reference.md §6.
    for (std::size_t i = 0; i < vcpus_.size(); ++i) {
        auto& cpu = vcpus_[i]->cpu;
        const auto& v = ms.vcpus[i];
        // The guest calibrated against the capturing host's TSC rate: keep it if this host's
        // differs by more than KVM's own tolerance (250 ppm).
        auto khz = cpu.get_tsc_khz();
        if (!khz) return khz.error();
        if (v.tsc_khz != 0 && std::uint64_t(v.tsc_khz > *khz ? v.tsc_khz - *khz : *khz - v.tsc_khz) * 1'000'000 > std::uint64_t(*khz) * 250)
            if (auto ec = cpu.set_tsc_khz(v.tsc_khz)) return snapshot_errc::cpu_mismatch;
        kvm_xsave xsave{};
        std::memcpy(xsave.region, v.xsave.data(), sizeof xsave.region);
        for (auto ec : {cpu.set_mp_state(v.mp_state), cpu.set_regs(v.regs), cpu.set_sregs(v.sregs), cpu.set_xsave(xsave),
                        cpu.set_xcrs(v.xcrs), cpu.set_debugregs(v.debugregs), cpu.set_lapic(v.lapic), cpu.set_msrs(v.msrs),
                        cpu.set_vcpu_events(v.events)})
            if (ec) return ec;
        (void)cpu.kvmclock_ctrl();  // EINVAL for a guest without kvmclock: nothing to tell it
    }
    // The VM. kvmclock resumes where it stopped (no KVM_CLOCK_REALTIME): the guest's monotonic
    // clock neither jumps nor sees the time spent stored; the agent sets its wall clock.
    if (auto ec = vm_->set_pit2(ms.vm.pit)) return ec;
    kvm_clock_data clock{};
    clock.clock = ms.vm.clock.clock;
    if (auto ec = vm_->set_clock(clock)) return ec;
    for (const auto& chip : ms.vm.irqchips)
        if (auto ec = vm_->set_irqchip(chip)) return ec;
    return {};
}

}  // namespace mimobox::vm::detail
