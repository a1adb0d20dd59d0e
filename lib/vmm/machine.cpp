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
#include "platform_verdict.hpp"
#include "vmm/kvm_irq_line.hpp"
#include "vmm/serial_vsock_link.hpp"
#include "vmm/virtio_vsock_link.hpp"
#include "vsock_host/vm_vsock_channel.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fstream>
#include <iterator>
#include <sys/eventfd.h>

namespace mimobox::vm::detail {

namespace asio = boost::asio;

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

machine::machine(asio::any_io_executor executor, microvm_config config)
    : strand_(asio::make_strand(std::move(executor))),
      config_(std::move(config)),
      console_(config_.console_capacity) {}

machine::~machine() {
    // Reached only when no exit loop holds us any more (they keep a shared_ptr), so the threads
    // are idle or were never started; stop_and_join also covers an io_context torn down mid-run.
    for (auto& slot : vcpus_)
        if (slot->thread) slot->thread->stop_and_join();
}

template <class Handler, class... Args>
void machine::complete(Handler handler, Args... args) {
    // Always through post, never inline inside an initiating function; the handler runs on its
    // associated executor, or on this VM's strand when it has none.
    asio::post(strand_, asio::append(std::move(handler), std::move(args)...));
}

// ---- boot

void machine::boot(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (!is_valid_transition(self->state(), kvm_lifecycle::booting))
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        self->set_state(kvm_lifecycle::booting);
        if (auto ec = self->build()) {
            self->vcpus_.clear();
            self->images_.reset();
            self->vsock_.reset();  // its interrupt line points at the VM
            self->vm_.reset();
            self->set_state(kvm_lifecycle::stopped);
            self->stop_info_ = vm_stop_info{kvm_exit_reason::internal_error, "boot failed: " + ec.message(), {}, {}};
            return self->complete(std::move(h), ec);
        }
        self->vsock_->start(self);
        self->start_vcpus();
        self->set_state(kvm_lifecycle::running);
        self->complete(std::move(h), error_code{});
    });
}

machine::error_code machine::build() {
    // Input first, platform second: a bad image or argument gets its own error on any host.
    if (auto ec = config_.validate()) return ec;
    if (auto ec = prepare_images()) return ec;
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
    if (auto ec = vm_->create_pit2()) return ec;

    // Guest RAM: below the MMIO gap, and the rest above 4 GiB.
    const std::uint64_t total = std::uint64_t(config_.memory_mib) << 20;
    const std::uint64_t low = std::min(total, boot::layout::mmio_gap_start);
    std::uint32_t slot = 0;
    for (auto [base, size] : {std::pair{std::uint64_t{0}, low},
                              std::pair{boot::layout::mmio_gap_end, total - low}}) {
        if (size == 0) continue;
        auto map = memory::mapping::anonymous(size);
        if (!map) return map.error();
        void* host = map->data();
        if (auto ec = memory_.add_region(memory::guest_addr(base), std::move(*map))) return ec;
        if (auto ec = vm_->set_user_memory_region(slot++, base, size, host)) return ec;
    }
    if (auto ec = load_images()) return ec;

    // Devices: COM1 with its interrupt on GSI 4, and the i8042's reset line.
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
    if (auto ec = vsock_->attach(*vm_, pio_bus_, mmio_bus_)) return ec;

    // vCPUs: CPUID before MSRs (KVM derives MSR support from it), then LAPIC; registers on the BSP.
    auto mmap_size = kvm_->vcpu_mmap_size();
    if (!mmap_size) return mmap_size.error();
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();
    for (unsigned i = 0; i < config_.vcpu_count; ++i) {
        auto cpu = vm_->create_vcpu(i, *mmap_size);
        if (!cpu) return cpu.error();
        auto cpuid = boot::normalize_cpuid(*supported, i, config_.vcpu_count);
        if (auto ec = cpu->set_cpuid(cpuid)) return ec;
        if (auto ec = boot::setup_msrs(*cpu)) return ec;
        if (auto ec = boot::setup_lapic_lint(*cpu)) return ec;
        // Only the BSP starts at the kernel entry; APs wait in KVM for INIT/SIPI.
        if (i == 0)
            if (auto ec = boot::setup_long_mode(*cpu, boot_entry_)) return ec;
        auto slot_ptr = std::make_unique<vcpu_slot>(vcpu_slot{std::move(*cpu), nullptr});
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

void machine::start_vcpus() {
    for (std::size_t i = 0; i < vcpus_.size(); ++i) {
        vcpus_[i]->thread->start();
        ++running_loops_;
        asio::co_spawn(strand_, exit_loop(i), [self = shared_from_this()](std::exception_ptr) {
            self->on_loop_finished();
        });
    }
}

// ---- the exit loop: one coroutine per vCPU, on the strand

asio::awaitable<void> machine::exit_loop(std::size_t index) {
    auto self = shared_from_this();  // the loop keeps the machine alive
    auto& slot = *vcpus_[index];
    for (;;) {
        if (pause_requested_ || stop_requested_) break;
        std::atomic_ref<std::uint8_t>(slot.cpu.run_state().immediate_exit).store(0, std::memory_order_relaxed);
        auto exit = co_await slot.thread->async_run(strand_, asio::use_awaitable);
        if (!handle_exit(index, exit)) break;
    }
    slot.thread->stop_and_join();
}

bool machine::handle_exit(std::size_t, vmm::vcpu_exit& exit) {
    struct visitor {
        machine& m;
        bool operator()(vmm::io_exit& io) const {
            for (std::size_t off = 0; off + io.size <= io.data.size(); off += io.size) {
                auto one = io.data.subspan(off, io.size);
                if (io.write) m.pio_bus_.write(io.port, one);
                else m.pio_bus_.read(io.port, one);
            }
            return !m.stop_requested_;
        }
        bool operator()(vmm::mmio_exit& mmio) const {
            if (mmio.write) m.mmio_bus_.write(mmio.addr, mmio.data);
            else m.mmio_bus_.read(mmio.addr, mmio.data);
            return !m.stop_requested_;
        }
        bool operator()(vmm::shutdown_exit&) const {
            m.begin_stop(kvm_exit_reason::guest_reboot, "triple fault (KVM_EXIT_SHUTDOWN)");
            return false;
        }
        bool operator()(vmm::system_event_exit& e) const {
            m.begin_stop(e.type == KVM_SYSTEM_EVENT_SHUTDOWN ? kvm_exit_reason::guest_shutdown
                                                            : kvm_exit_reason::guest_reboot,
                         "KVM_EXIT_SYSTEM_EVENT type " + std::to_string(e.type));
            return false;
        }
        bool operator()(vmm::halt_exit&) const {
            m.begin_stop(kvm_exit_reason::guest_halt, "HLT");
            return false;
        }
        bool operator()(vmm::kicked_exit&) const { return true; }  // the loop re-checks the flags
        bool operator()(vmm::fatal_exit& f) const {
            m.begin_stop(f.reason, f.detail);
            return false;
        }
    };
    return std::visit(visitor{*this}, exit);
}

void machine::kick_all() {
    for (auto& slot : vcpus_) slot->thread->kick();
}

void machine::begin_stop(kvm_exit_reason reason, std::string detail) {
    if (!stop_info_) {
        vm_stop_info info{reason, std::move(detail), console_.tail_lines(60), {}};
        // The reason is what the VM did (with panic=-1 a panic is a reboot: a triple fault).
        // Any program in the guest can print "Kernel panic", so the console line is only a hint.
        if (reason == kvm_exit_reason::guest_reboot) info.console_panic_line = console_.find_line("Kernel panic");
        stop_info_ = std::move(info);
    }
    if (stop_requested_) return;
    stop_requested_ = true;
    if (state() != kvm_lifecycle::stopped) set_state(kvm_lifecycle::stopping);
    kick_all();
    if (running_loops_ == 0) finish_stop();
}

void machine::on_loop_finished() {
    if (--running_loops_ != 0) return;
    if (stop_requested_) return finish_stop();
    if (pause_requested_) {
        set_state(kvm_lifecycle::paused);
        for (auto& h : std::exchange(pause_waiters_, {})) complete(std::move(h), error_code{});
    }
}

void machine::finish_stop() {
    if (state() == kvm_lifecycle::stopped) return;
    for (auto& slot : vcpus_) slot->thread->stop_and_join();
    if (vsock_) vsock_->stop();  // ends the queue workers, aborts pending stream operations
    set_state(kvm_lifecycle::stopped);
    for (auto& h : std::exchange(pause_waiters_, {})) complete(std::move(h), error_code(lifecycle_errc::vm_stopped));
    for (auto& h : std::exchange(stop_waiters_, {})) complete(std::move(h), error_code{});
    for (auto& w : std::exchange(console_waiters_, {})) {
        asio::get_associated_cancellation_slot(w.handler).clear();
        complete(std::move(w.handler), error_code(lifecycle_errc::vm_stopped));
    }
    for (auto& w : std::exchange(stopped_waiters_, {})) {
        asio::get_associated_cancellation_slot(w.handler).clear();
        complete(std::move(w.handler), error_code{}, *stop_info_);
    }
}

// ---- pause / resume / stop

void machine::pause(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (self->state() == kvm_lifecycle::pausing) return self->pause_waiters_.push_back(std::move(h));
        if (!is_valid_transition(self->state(), kvm_lifecycle::pausing))
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        self->set_state(kvm_lifecycle::pausing);
        self->pause_requested_ = true;
        self->pause_waiters_.push_back(std::move(h));
        self->kick_all();
    });
}

void machine::resume(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (self->state() != kvm_lifecycle::paused)
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        self->pause_requested_ = false;
        self->start_vcpus();
        self->set_state(kvm_lifecycle::running);
        self->complete(std::move(h), error_code{});
    });
}

void machine::stop(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        switch (self->state()) {
        case kvm_lifecycle::stopped: return self->complete(std::move(h), error_code{});
        case kvm_lifecycle::created:
            self->stop_info_ = vm_stop_info{kvm_exit_reason::host_stop, "stopped before boot", {}, {}};
            self->finish_stop();  // completes whoever waits for the stop or for console text
            return self->complete(std::move(h), error_code{});
        default:
            self->stop_waiters_.push_back(std::move(h));
            self->begin_stop(kvm_exit_reason::host_stop, "async_stop");
        }
    });
}

void machine::request_stop() {
    asio::post(strand_, [self = shared_from_this()] {
        switch (self->state()) {
        case kvm_lifecycle::stopped: return;
        case kvm_lifecycle::created:
            // Never booted: nothing runs, but pending waits must still complete.
            self->stop_info_ = vm_stop_info{kvm_exit_reason::host_stop, "backend destroyed before boot", {}, {}};
            return self->finish_stop();
        default: self->begin_stop(kvm_exit_reason::host_stop, "backend destroyed");
        }
    });
}

// ---- waiting for the console and for the stop

// Installed in the initiating thread, so a cancellation emitted right after initiation finds
// it; the removal itself runs on the strand, after the waiter's registration (posted first).
template <auto Waiters, class Handler, class... AbortArgs>
void machine::cancel_waiter_on_signal(Handler& h, std::uint64_t id, AbortArgs... abort_args) {
    auto slot = asio::get_associated_cancellation_slot(h);
    if (!slot.is_connected()) return;
    slot.assign([weak = weak_from_this(), id, abort_args...](asio::cancellation_type) {
        auto m = weak.lock();
        if (!m) return;
        asio::post(m->strand_, [m, id, abort_args...] {
            auto& waiters = (*m).*Waiters;
            for (auto it = waiters.begin(); it != waiters.end(); ++it) {
                if (it->id != id) continue;
                auto handler = std::move(it->handler);
                waiters.erase(it);
                asio::get_associated_cancellation_slot(handler).clear();
                return m->complete(std::move(handler), error_code(asio::error::operation_aborted), abort_args...);
            }
        });
    });
}

void machine::wait_stopped(stopped_handler h) {
    const auto id = next_waiter_id_.fetch_add(1, std::memory_order_relaxed);
    cancel_waiter_on_signal<&machine::stopped_waiters_>(h, id, vm_stop_info{});
    asio::post(strand_, [self = shared_from_this(), id, h = std::move(h)]() mutable {
        if (self->state() == kvm_lifecycle::stopped) {
            asio::get_associated_cancellation_slot(h).clear();
            return self->complete(std::move(h), error_code{}, self->stop_info_.value_or(vm_stop_info{}));
        }
        self->stopped_waiters_.push_back({id, std::move(h)});
    });
}

void machine::wait_console(std::string text, void_handler h) {
    const auto id = next_waiter_id_.fetch_add(1, std::memory_order_relaxed);
    cancel_waiter_on_signal<&machine::console_waiters_>(h, id);
    asio::post(strand_, [self = shared_from_this(), id, text = std::move(text), h = std::move(h)]() mutable {
        const bool found = self->console_.contains_since(text, 0);
        if (found || self->state() == kvm_lifecycle::stopped) {
            asio::get_associated_cancellation_slot(h).clear();
            return self->complete(std::move(h), found ? error_code{} : error_code(lifecycle_errc::vm_stopped));
        }
        self->console_waiters_.push_back({id, std::move(text), self->console_.total(), std::move(h)});
    });
}

void machine::on_console_byte(std::uint8_t byte) {
    const char c = static_cast<char>(byte);
    if (c == '\r') return;  // the guest tty turns \n into \r\n; keep the log in host line endings
    console_.append(std::string_view(&c, 1));
    pending_console_.push_back(c);
    if (c == '\n' || pending_console_.size() >= 256) {
        if (console_callback_) console_callback_(pending_console_);
        pending_console_.clear();
        check_console_waiters();
    }
}

void machine::check_console_waiters() {
    const auto total = console_.total();
    for (auto it = console_waiters_.begin(); it != console_waiters_.end();) {
        if (console_.contains_since(it->text, it->searched_to)) {
            asio::get_associated_cancellation_slot(it->handler).clear();
            complete(std::move(it->handler), error_code{});
            it = console_waiters_.erase(it);
        } else {
            it->searched_to = total;
            ++it;
        }
    }
}

}  // namespace mimobox::vm::detail
