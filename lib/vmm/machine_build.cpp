// The build step of a machine: everything between a validated config and starting the vCPUs
// (KVM VM and vCPUs, guest memory, images, boot tables, devices, the vsock link), kept apart
// from the running machine's lifecycle (machine.cpp).
#include "vmm/machine.hpp"

#include "boot/cmdline.hpp"
#include "boot/cpu_setup.hpp"
#include "boot/cpuid.hpp"
#include "boot/kernel_image.hpp"
#include "boot/layout.hpp"
#include "boot/loader.hpp"
#include "boot/mptable.hpp"
#include "boot/zero_page.hpp"
#include "mimobox/vm/error.hpp"
#include "api/platform_verdict.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vsock_host/serial_vsock_link.hpp"
#include "vsock_host/virtio_vsock_link.hpp"
#include "vsock_host/vm_vsock_channel.hpp"
#include "vsock_host/vsock_host.hpp"

#include <fstream>
#include <iterator>
#include <sys/eventfd.h>

namespace mimobox::vm::detail {

namespace {

// Arguments every guest gets. reboot=t: a guest reboot or panic triple-faults, which KVM reports
// as KVM_EXIT_SHUTDOWN at once (the keyboard-controller path wastes tens of seconds under nested
// virtualization). panic=-1 reboots immediately on panic.
constexpr const char* base_cmdline =
    "console=ttyS0 reboot=t panic=-1 quiet nomodule i8042.noaux i8042.nomux i8042.dumbkbd "
    "tsc=reliable no_timer_check";
// The vsock device at the start of the MMIO gap, GSI 5 (Linux: CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES);
// Linux probes no UART beyond the console.
constexpr const char* virtio_mmio_vsock_cmdline = "8250.nr_uarts=1 virtio_mmio.device=4K@0xd0000000:5";
// virtio-pci needs no argument: Linux probes the bus itself.
constexpr const char* virtio_pci_vsock_cmdline = "8250.nr_uarts=1";
static_assert(vmm::virtio_vsock_link::mmio_base == boot::layout::virtio_mmio_base && vmm::virtio_vsock_link::gsi == 5);
// Or no virtio at all: ttyS1 (COM2, the legacy port Linux probes at 0x2f8/IRQ 3) carries vsock,
// and the agent learns that, and its CID, from these (guest/agent/serial_bridge.hpp).
constexpr const char* serial_vsock_cmdline = "8250.nr_uarts=2 mimobox.vsock_uart=ttyS1";
static_assert(vmm::serial_vsock_link::port_base == 0x2f8 && vmm::serial_vsock_link::gsi == 3);
constexpr std::uint16_t com1_port = 0x3f8;
constexpr std::uint32_t com1_gsi = 4;
constexpr std::uint16_t i8042_port = 0x60;

boost::system::result<std::vector<std::uint8_t>> read_file(const std::filesystem::path& path, microvm_errc missing) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return missing;
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return missing;
    return bytes;
}

}  // namespace

machine::error_code machine::build() {
    // Input first, platform second: a bad image or argument gets its own error on any host.
    if (auto ec = config_.validate()) return ec;
    if (auto ec = prepare_images()) return ec;
    if (auto ec = create_vm()) return ec;
    if (auto ec = add_ram([](std::uint64_t, std::uint64_t size) { return memory::mapping::anonymous(size); })) return ec;
    if (auto ec = load_images()) return ec;
    if (auto ec = create_devices()) return ec;
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();
    return create_vcpus([&](unsigned i) { return boot::normalize_cpuid(*supported, i, config_.vcpu_count); }, true);
}

machine::error_code machine::create_vm() {
    if (auto ec = vmm::vcpu_thread::install_kick_signal()) return ec;
    if (auto ec = cached_kvm_verdict()) return ec;
    auto sys = kvm::system::open();
    if (!sys) return microvm_errc::unsupported_platform;
    kvm_.emplace(std::move(*sys));
    for (long cap : {KVM_CAP_IRQCHIP, KVM_CAP_IOEVENTFD, KVM_CAP_USER_MEMORY, KVM_CAP_SET_TSS_ADDR,
                     KVM_CAP_PIT2, KVM_CAP_EXT_CPUID})
        if (kvm_->check_extension(cap) <= 0) return microvm_errc::missing_kvm_capability;
    int max_vcpus = kvm_->check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus <= 0) max_vcpus = kvm_->check_extension(KVM_CAP_NR_VCPUS);
    if (max_vcpus > 0 && config_.vcpu_count > static_cast<unsigned>(max_vcpus)) return microvm_errc::too_many_vcpus;

    auto vm = kvm_->create_vm();
    if (!vm) return microvm_errc::unsupported_platform;
    vm_.emplace(std::move(*vm));
    if (auto ec = vm_->set_tss_addr(boot::layout::tss)) return ec;
    if (auto ec = vm_->set_identity_map_addr(boot::layout::identity_map)) return ec;
    if (auto ec = vm_->create_irqchip()) return ec;
    return vm_->create_pit2();
}

machine::error_code machine::add_ram(const backing_factory& make_backing) {
    // Guest RAM: below the MMIO gap, and the rest above 4 GiB. The memory file of a snapshot
    // holds the regions one after another, so `file_offset` is the bytes of RAM before this one.
    const std::uint64_t total = std::uint64_t(config_.memory_mib) << 20;
    const std::uint64_t low = std::min(total, boot::layout::mmio_gap_start);
    std::uint32_t slot = 0;
    std::uint64_t file_offset = 0;
    for (auto [base, size] : {std::pair{std::uint64_t{0}, low},
                              std::pair{boot::layout::mmio_gap_end, total - low}}) {
        if (size == 0) continue;
        auto map = make_backing(file_offset, size);
        if (!map) return map.error();
        void* host = map->data();
        if (auto ec = memory_.add_region(memory::guest_addr(base), std::move(*map))) return ec;
        if (auto ec = vm_->set_user_memory_region(slot++, base, size, host)) return ec;
        file_offset += size;
    }
    return {};
}

machine::error_code machine::create_devices() {
    // COM1 with its interrupt on GSI 4, and the i8042's reset line.
    serial_irq_ = std::make_unique<vmm::kvm_irq_line>();
    serial_irq_->connect(*vm_, com1_gsi);
    serial_ = std::make_unique<devices::serial>(*serial_irq_, [this](std::uint8_t b) { on_console_byte(b); });
    i8042_ = std::make_unique<devices::i8042>([this] { begin_stop(kvm_exit_reason::guest_reboot, "i8042 reset"); });
    pio_bus_.add(com1_port, 8, *serial_);
    pio_bus_.add(i8042_port, 5, *i8042_);
    vsock_ = std::make_unique<vmm::vsock_host>(strand_, memory_, config_.vsock_cid, config_.vsock,
                                               [weak = weak_from_this(), ex = strand_](const vsock::endpoint& ep) {
                                                   return vm::vsock_stream(std::make_shared<vm_vsock_channel>(weak, ex, ep));
                                               });
    return vsock_->attach(*vm_, pio_bus_, mmio_bus_);
}

machine::error_code machine::create_vcpus(const std::function<std::vector<kvm_cpuid_entry2>(unsigned)>& cpuid_for, bool boot) {
    // CPUID before MSRs (KVM derives MSR support from it), then LAPIC; registers on the BSP.
    // A restore sets all of that from the snapshot instead (boot false): only CPUID here.
    auto mmap_size = kvm_->vcpu_mmap_size();
    if (!mmap_size) return mmap_size.error();
    for (unsigned i = 0; i < config_.vcpu_count; ++i) {
        auto cpu = vm_->create_vcpu(i, *mmap_size);
        if (!cpu) return cpu.error();
        auto cpuid = cpuid_for(i);
        // None for a shell (prepare): its restore sets the snapshot's before the vCPU first runs.
        if (!cpuid.empty())
            if (auto ec = cpu->set_cpuid(cpuid)) return ec;
        if (boot) {
            if (auto ec = boot::setup_msrs(*cpu)) return ec;
            if (auto ec = boot::setup_lapic_lint(*cpu)) return ec;
            // Only the BSP starts at the kernel entry; APs wait in KVM for INIT/SIPI.
            if (i == 0)
                if (auto ec = boot::setup_long_mode(*cpu, boot_entry_)) return ec;
        }
        auto slot_ptr = std::make_unique<vcpu_slot>(vcpu_slot{std::move(*cpu), nullptr, std::move(cpuid)});
        slot_ptr->thread = std::make_unique<vmm::vcpu_thread>(slot_ptr->cpu, slot_ptr->cpu.run_size());
        // The guest's interrupt handler reads and acknowledges the virtio-mmio interrupt status
        // on every interrupt, and Linux enumerates the PCI bus at boot with hundreds of
        // configuration accesses: exits the link serves on this thread instead of parking it for
        // a round trip through the strand. vsock_ outlives the thread: every path that ends a VM
        // joins its vCPU threads first, and vsock_ is never replaced.
        slot_ptr->thread->set_fast_path([host = vsock_.get()](vmm::vcpu_exit& exit) {
            if (auto* mmio = std::get_if<vmm::mmio_exit>(&exit))
                return host->serve_on_vcpu_thread(mmio->addr, mmio->write, mmio->data);
            // One access, not a string instruction's several.
            auto* io = std::get_if<vmm::io_exit>(&exit);
            return io && io->data.size() == io->size && host->serve_port_on_vcpu_thread(io->port, io->write, io->data);
        });
        vcpus_.push_back(std::move(slot_ptr));
    }
    return {};
}

machine::error_code machine::prepare_images() {
    auto kernel_file = read_file(config_.kernel, microvm_errc::kernel_not_found);
    if (!kernel_file) return kernel_file.error();
    auto image = boot::parse_kernel(*kernel_file);
    if (!image) return image.error();
    auto initrd_file = read_file(config_.initramfs, microvm_errc::initramfs_not_found);
    if (!initrd_file) return initrd_file.error();

    boot::kernel_cmdline cmdline;
    if (auto ec = cmdline.append(base_cmdline)) return ec;
    if (config_.vsock == vsock_link::com2_uart) {
        if (auto ec = cmdline.append(serial_vsock_cmdline)) return ec;
        if (auto ec = cmdline.append("mimobox.vsock_cid=" + std::to_string(config_.vsock_cid))) return ec;
    } else if (config_.vsock == vsock_link::virtio_mmio) {
        if (auto ec = cmdline.append(virtio_mmio_vsock_cmdline)) return ec;
    } else {
        if (auto ec = cmdline.append(virtio_pci_vsock_cmdline)) return ec;
    }
    if (auto ec = cmdline.append(config_.cmdline_extra)) return ec;
    if (auto ec = cmdline.check_length(std::min<std::size_t>(image->cmdline_size, boot::layout::cmdline_max - 1)))
        return ec;
    auto initrd = boot::place_initrd(*image, std::uint64_t(config_.memory_mib) << 20, initrd_file->size());
    if (!initrd) return initrd.error();
    images_.emplace(prepared_images{std::move(*kernel_file), std::move(*image), std::move(*initrd_file), *initrd,
                                    cmdline.str()});
    return {};
}

machine::error_code machine::load_images() {
    auto& p = *images_;
    const std::uint64_t total = std::uint64_t(config_.memory_mib) << 20;
    if (auto ec = boot::load_kernel(memory_, p.image, p.kernel_file)) return ec;
    if (auto ec = memory_.write(memory::guest_addr(p.initrd.addr), std::as_bytes(std::span(p.initrd_file)))) return ec;
    std::string line = p.cmdline;
    line.push_back('\0');
    if (auto ec = memory_.write(memory::guest_addr(boot::layout::cmdline), std::as_bytes(std::span(line)))) return ec;
    if (auto ec = boot::write_zero_page(memory_, p.image, p.initrd, boot::e820_map(total))) return ec;
    if (auto ec = boot::write_mptable(memory_, config_.vcpu_count)) return ec;
    if (auto ec = boot::write_boot_tables(memory_)) return ec;
    boot_entry_ = p.image.entry_64;
    images_.reset();  // the file bytes are in guest memory now
    return error_code{};
}

}  // namespace mimobox::vm::detail
