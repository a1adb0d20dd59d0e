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


// ---- boot

void machine::boot(void_handler h) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(h)]() mutable {
        if (!is_valid_transition(self->state(), kvm_lifecycle::booting))
            return self->complete(std::move(h), error_code(lifecycle_errc::invalid_state));
        self->set_state(kvm_lifecycle::booting);
        if (auto ec = self->build()) {
            self->fail_build(ec);
            return self->complete(std::move(h), ec);
        }
        self->vsock_->start(self);
        self->start_vcpus();
        self->set_state(kvm_lifecycle::running);
        self->complete(std::move(h), error_code{});
    });
}

void machine::fail_build(const error_code& ec) {
    vcpus_.clear();
    images_.reset();
    vsock_.reset();  // its interrupt line points at the VM
    vm_.reset();
    set_state(kvm_lifecycle::stopped);
    stop_info_ = vm_stop_info{kvm_exit_reason::internal_error, "boot failed: " + ec.message(), {}, {}};
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
        if (vsock_) vsock_->set_paused(true);
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
        if (self->vsock_) self->vsock_->set_paused(false);
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
