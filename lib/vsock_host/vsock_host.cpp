#include "vsock_host/vsock_host.hpp"

#include "vsock_host/serial_vsock_link.hpp"
#include "vsock_host/virtio_vsock_link.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace mimobox::vmm {

namespace asio = boost::asio;

vsock_host::vsock_host(asio::strand<asio::any_io_executor> strand, const memory::guest_memory& memory,
                       std::uint64_t guest_cid, vm::vsock_link kind, stream_factory make_stream)
    : vsock_host(strand, guest_cid, [&](vsock::muxer& mux) -> std::unique_ptr<packet_link> {
          if (kind == vm::vsock_link::com2_uart) return std::make_unique<serial_vsock_link>(mux);
          return std::make_unique<virtio_vsock_link>(strand, memory, mux, kind);
      }, std::move(make_stream)) {}

vsock_host::vsock_host(asio::strand<asio::any_io_executor> strand, std::uint64_t guest_cid, const link_factory& make_link,
                       stream_factory make_stream)
    : strand_(std::move(strand)), make_stream_(std::move(make_stream)), muxer_(guest_cid), link_(make_link(muxer_)) {}

vsock_host::~vsock_host() = default;

template <class Handler, class... Args>
void vsock_host::complete(Handler handler, Args... args) {
    asio::get_associated_cancellation_slot(handler).clear();
    asio::post(strand_, asio::append(std::move(handler), std::move(args)...));
}

void vsock_host::start(std::shared_ptr<void> keep_alive) {
    owner_ = keep_alive;
    link_->start([this] { on_link_activity(); }, keep_alive);
    lost_interrupt_timer_.emplace(strand_, vsock_timer::time_point::max());
    asio::co_spawn(strand_, lost_interrupt_watch(keep_alive), asio::detached);
    owed_interrupt_timer_.emplace(strand_, vsock_timer::time_point::max());
    asio::co_spawn(strand_, owed_interrupt_watch(keep_alive), asio::detached);
    if (const auto interval = stall_log_interval(); interval.count() > 0) {
        stall_timer_.emplace(strand_);
        asio::co_spawn(strand_, stall_watch(interval, std::move(keep_alive)), asio::detached);
    }
}

// Interrupts that go missing. The guest refills its receive queue when it handles our
// used-buffer interrupt; should that interrupt be lost (seen under nested emulation: the guest
// sat idle with an empty receive queue while we held data for it, a permanent hang), raising
// it again costs the guest one spurious interrupt and unsticks it. The same goes for a guest
// that falls quiet while operations wait on it: seen under the harness with the guest's
// callbacks enabled, nothing queued on our side, the last interrupt read and acknowledged,
// and the guest idle; one interrupt raised again, it went on. A quiet second is long enough
// not to disturb a busy guest (a Linux line is only disabled for unhandled interrupts less
// than 100 ms apart) and short against a hang. Armed only while starved or while operations
// wait, so an idle VM has no timer.
asio::awaitable<void> vsock_host::lost_interrupt_watch([[maybe_unused]] std::shared_ptr<void> keep_alive) {
    using namespace std::chrono_literals;
    while (!stopped_) {
        auto [ec] = co_await lost_interrupt_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopped_) break;
        if (ec) continue;  // re-armed
        const auto now = vsock_clock::now();
        if (paused_) {
            lost_interrupt_timer_->expires_at(vsock_timer::time_point::max());  // set_paused(false) re-arms it
        } else if (link_->starved_for_rx_buffers()) {
            reraise_interrupt(renotifications_, "vsock data waited 500 ms with no sign of the guest taking it");
            lost_interrupt_timer_->expires_after(500ms);
        } else if (!has_pending_operations()) {
            lost_interrupt_timer_->expires_at(vsock_timer::time_point::max());
        } else if (now - last_activity_ < quiet_guest_limit) {
            lost_interrupt_timer_->expires_at(last_activity_ + quiet_guest_limit);
        } else {
            const auto quiet_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_activity_).count();
            reraise_interrupt(quiet_renotifications_,
                              "vsock operations waited " + std::to_string(quiet_ms) + " ms on a quiet guest");
            lost_interrupt_timer_->expires_after(quiet_guest_limit);
        }
    }
}

void vsock_host::reraise_interrupt(std::uint64_t& count, const std::string& why) {
    if (!link_->renotify()) return;
    ++count;
    if (stall_log_interval().count() > 0)
        std::fprintf(stderr, "mimobox: %s; interrupt raised again (%llu)\n", why.c_str(), static_cast<unsigned long long>(count));
}

// A held-back interrupt (TX completions: the guest's send buffers) normally rides on the next
// receive interrupt. When no packet for the guest follows, it goes out after this delay. It
// must outlast a whole exchange: the guest's first packets of an exec (a RESPONSE, a credit
// update) start it, and if it fires before the answer it interrupts the command while it runs.
// At 20 ms it did, in nearly every exec under emulation (commands take 10-40 ms there), and
// the agent's spawn took as long as a cold one. Nothing in the guest waits on these buffers:
// only memory is held, and the device flushes early once a batch of completions piles up, so
// a streaming guest never runs out of send descriptors.
// The timer is only ever armed for a deadline at or before the current one's: when it fires it
// looks at what is owed now, which may be nothing (another interrupt carried it) or a later
// debt (owed again since), and sleeps until that one is due.
// The same timer carries deferred output (defer_pump): a close the guest already made waits
// here for the next exchange, and goes out on its own when none comes in time.
asio::awaitable<void> vsock_host::owed_interrupt_watch([[maybe_unused]] std::shared_ptr<void> keep_alive) {
    while (!stopped_) {
        auto [ec] = co_await owed_interrupt_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopped_) break;
        if (ec) continue;  // armed while idle
        if (const auto due = next_deadline(); due && vsock_clock::now() < *due) {
            owed_interrupt_timer_->expires_at(*due);  // a later debt
            continue;
        }
        owed_interrupt_timer_->expires_at(vsock_timer::time_point::max());
        // Connections the guest left closing past their timeout get our RST now.
        const bool expired = muxer_.expire_closing(vsock_clock::now()) > 0;
        if (deferred_since_ || expired) pump();  // may leave an interrupt owed again: flushed just below
        if (std::exchange(owed_since_, std::nullopt)) link_->flush_interrupt();
        if (const auto due = next_deadline()) arm_at(*due);  // close timeouts still running
    }
}

std::optional<std::chrono::steady_clock::time_point> vsock_host::next_deadline() const {
    auto first = owed_since_;
    if (deferred_since_ && (!first || *deferred_since_ < *first)) first = deferred_since_;
    if (first) *first += owed_interrupt_delay;
    if (const auto close = muxer_.next_close_deadline(); close && (!first || *close < *first)) first = close;
    return first;
}

std::chrono::seconds vsock_host::stall_log_interval() {
    const char* v = std::getenv("MIMOBOX_VSOCK_STALL_LOG_S");
    return std::chrono::seconds(v ? std::atoi(v) : 0);
}

bool vsock_host::has_pending_operations() const {
    if (!connecting_.empty()) return true;
    for (const auto& [k, io] : io_)
        if (io.reader || io.writer) return true;
    return false;
}

asio::awaitable<void> vsock_host::stall_watch(std::chrono::seconds interval, [[maybe_unused]] std::shared_ptr<void> keep_alive) {
    bool reported = false;
    while (!stopped_) {
        stall_timer_->expires_after(interval);
        auto [ec] = co_await stall_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec || stopped_) break;
        if (const auto moved = link_->bytes_moved(); moved != bytes_moved_at_check_) {
            bytes_moved_at_check_ = moved;
            last_activity_ = vsock_clock::now();
        }
        const bool stalled = !paused_ && has_pending_operations() && vsock_clock::now() - last_activity_ >= interval;
        if (stalled && !reported) {
            std::fprintf(stderr, "mimobox: vsock operations pending with no queue activity for %llds\n%s",
                         static_cast<long long>(interval.count()), describe().c_str());
        }
        reported = stalled;
    }
}

std::string vsock_host::describe() const {
    std::string out = link_->describe();
    out += "  receive-queue renotifications=" + std::to_string(renotifications_) +
           " quiet-guest renotifications=" + std::to_string(quiet_renotifications_) + "\n";
    for (const auto& [k, io] : io_)
        out += "  stream host:" + std::to_string(k.first) + " guest:" + std::to_string(k.second) +
               " reader=" + std::to_string(io.reader.has_value()) + " writer=" + std::to_string(io.writer.has_value()) + "\n";
    return out;
}

void vsock_host::set_paused(bool paused) {
    if (stopped_ || paused_ == paused) return;
    paused_ = paused;
    last_activity_ = vsock_clock::now();
    if (!lost_interrupt_timer_) return;
    lost_interrupt_timer_->expires_at(vsock_timer::time_point::max());
    if (!paused) arm_lost_interrupt_watch();
}

void vsock_host::arm_lost_interrupt_watch() {
    if (paused_ || !lost_interrupt_timer_ || lost_interrupt_timer_->expiry() != vsock_timer::time_point::max()) return;
    if (link_->starved_for_rx_buffers()) lost_interrupt_timer_->expires_after(std::chrono::milliseconds(500));
    else if (has_pending_operations()) lost_interrupt_timer_->expires_after(quiet_guest_limit);
}

void vsock_host::on_link_activity() {
    if (stopped_) return;
    last_activity_ = vsock_clock::now();
    pump();
}

void vsock_host::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (stall_timer_) stall_timer_->cancel();
    if (lost_interrupt_timer_) lost_interrupt_timer_->cancel();
    if (owed_interrupt_timer_) owed_interrupt_timer_->cancel();
    link_->stop();
    muxer_.fail_all(vsock::vsock_errc::connection_reset);
    const error_code aborted = asio::error::operation_aborted;
    for (auto& [k, list] : std::exchange(connecting_, {}))
        for (auto& w : list) complete(std::move(w.handler), aborted, vm::vsock_stream{});
    for (auto& [k, list] : std::exchange(accepting_, {}))
        for (auto& w : list) complete(std::move(w.handler), aborted, vm::vsock_stream{});
    for (auto& [k, io] : io_) {
        if (io.reader) complete(std::move(*io.reader), aborted, std::size_t{0});
        if (io.writer) complete(std::move(*io.writer), aborted, std::size_t{0});
        io.reader.reset();
        io.writer.reset();
    }
}

void vsock_host::connect(std::uint32_t guest_port, std::uint64_t id, stream_handler h) {
    if (stopped_) return complete(std::move(h), error_code(asio::error::operation_aborted), vm::vsock_stream{});
    if (auto broken = link_->failure()) return complete(std::move(h), broken, vm::vsock_stream{});
    auto ep = muxer_.connect(guest_port);
    if (!ep) return complete(std::move(h), error_code(asio::error::no_buffer_space), vm::vsock_stream{});
    connecting_[key_of(*ep)].push_back({id, std::move(h)});
    schedule_pump();
}

void vsock_host::accept(std::uint32_t host_port, std::uint64_t id, stream_handler h) {
    if (stopped_) return complete(std::move(h), error_code(asio::error::operation_aborted), vm::vsock_stream{});
    if (auto broken = link_->failure()) return complete(std::move(h), broken, vm::vsock_stream{});
    muxer_.listen(host_port);
    accepting_[host_port].push_back({id, std::move(h)});
    schedule_pump();
}

void vsock_host::cancel_wait(std::uint64_t id) {
    const error_code aborted = asio::error::operation_aborted;
    for (auto it = connecting_.begin(); it != connecting_.end(); ++it) {
        for (auto w = it->second.begin(); w != it->second.end(); ++w) {
            if (w->id != id) continue;
            complete(std::move(w->handler), aborted, vm::vsock_stream{});
            it->second.erase(w);
            if (it->second.empty()) {
                // Nobody wants this connection any more: RST it (the guest may have answered by now).
                if (auto* c = muxer_.find({muxer_.guest_cid(), it->first.first, it->first.second})) c->reset();
                connecting_.erase(it);
            }
            return schedule_pump();
        }
    }
    for (auto& [port, waiters] : accepting_) {
        for (auto w = waiters.begin(); w != waiters.end(); ++w) {
            if (w->id != id) continue;
            complete(std::move(w->handler), aborted, vm::vsock_stream{});
            waiters.erase(w);
            return;
        }
    }
}

void vsock_host::read(const vsock::endpoint& ep, std::vector<asio::mutable_buffer> b, io_handler h) {
    if (stopped_) return complete(std::move(h), error_code(asio::error::operation_aborted), std::size_t{0});
    auto& io = io_[key_of(ep)];
    if (io.reader) return complete(std::move(h), error_code(asio::error::in_progress), std::size_t{0});
    io.read_buffers = std::move(b);
    io.reader.emplace(std::move(h));
    schedule_pump();
}

void vsock_host::write(const vsock::endpoint& ep, std::vector<asio::const_buffer> b, io_handler h) {
    if (stopped_) return complete(std::move(h), error_code(asio::error::operation_aborted), std::size_t{0});
    auto& io = io_[key_of(ep)];
    if (io.writer) return complete(std::move(h), error_code(asio::error::in_progress), std::size_t{0});
    io.write_buffers = std::move(b);
    io.writer.emplace(std::move(h));
    schedule_pump();
}

void vsock_host::cancel(const vsock::endpoint& ep, bool read_side) {
    auto it = io_.find(key_of(ep));
    if (it == io_.end()) return;
    auto& slot = read_side ? it->second.reader : it->second.writer;
    if (!slot) return;
    auto h = std::move(*slot);
    slot.reset();
    complete(std::move(h), error_code(asio::error::operation_aborted), std::size_t{0});
}

void vsock_host::shutdown_write(const vsock::endpoint& ep) {
    if (auto* c = muxer_.find(ep)) c->shutdown_write();
    schedule_pump();
}

void vsock_host::release(const vsock::endpoint& ep) {
    cancel(ep, true);
    cancel(ep, false);
    io_.erase(key_of(ep));
    attached_.erase(key_of(ep));
    auto* c = muxer_.find(ep);
    // The guest closed first (the agent does, right after its answer): our RST only confirms,
    // and nothing waits for it but the guest's socket. It goes with the next exchange, which
    // usually starts at once, instead of costing a pump, and often an interrupt, of its own
    // between an operation's answer and its caller.
    const bool only_acknowledges = c && c->close_only_acknowledges();
    muxer_.close(ep, vsock_clock::now());
    if (owed_interrupt_timer_)
        if (const auto due = next_deadline()) arm_at(*due);  // the close timeout, if it started one
    if (only_acknowledges) return defer_pump();
    schedule_pump();
}

void vsock_host::defer_pump() {
    if (stopped_) return;
    if (!owed_interrupt_timer_) return pump();  // not started: tests drive us directly
    if (deferred_since_) return;
    deferred_since_ = vsock_clock::now();
    arm_watch(*deferred_since_);
}

void vsock_host::arm_watch(std::chrono::steady_clock::time_point since) { arm_at(since + owed_interrupt_delay); }

void vsock_host::arm_at(std::chrono::steady_clock::time_point due) {
    // Never later than it is armed for: when it fires, the watch looks at every deadline anew.
    if (due < owed_interrupt_timer_->expiry()) owed_interrupt_timer_->expires_at(due);
}

void vsock_host::schedule_pump() {
    if (pump_scheduled_ || stopped_) return;
    // Not started (start() emplaces the timers): nothing runs on the strand for us yet, and
    // tests drive us directly.
    if (!owed_interrupt_timer_) return pump();
    pump_scheduled_ = true;
    asio::post(strand_, [this, owner = owner_] {
        auto alive = owner.lock();  // the machine owns us: alive means we are too
        if (!alive) return;
        pump_scheduled_ = false;
        pump();
    });
}

void vsock_host::pump() {
    if (stopped_) return;
    deferred_since_.reset();  // whatever waited goes now
    // Pending writes first: their data then leaves with whatever else is queued, under one
    // interrupt. Bounded: each round either moved packets or completed operations.
    progress();
    for (int round = 0; round < 8; ++round) {
        link_->process();
        if (!progress()) break;
    }
    // A broken serial line aborted every connection; nobody will connect to a listener again.
    if (auto broken = link_->failure())
        for (auto& [port, waiters] : std::exchange(accepting_, {}))
            for (auto& w : waiters) complete(std::move(w.handler), broken, vm::vsock_stream{});
    muxer_.collect_closed([this](const vsock::endpoint& ep) { return attached_.count(key_of(ep)) != 0; });
    arm_lost_interrupt_watch();
    // The delay runs from the moment an interrupt becomes owed (activity does not push it back).
    if (owed_interrupt_timer_) {
        if (!link_->owes_interrupt()) {
            owed_since_.reset();
        } else if (!owed_since_) {
            owed_since_ = vsock_clock::now();
            arm_watch(*owed_since_);
        }
    }
}

bool vsock_host::progress() {
    bool changed = false;
    // Host-initiated connections that got their answer.
    for (auto it = connecting_.begin(); it != connecting_.end();) {
        auto* c = muxer_.find({muxer_.guest_cid(), it->first.first, it->first.second});
        if (!c || c->current_state() == vsock::connection::state::connecting) {
            ++it;
            continue;
        }
        for (auto& w : it->second) {
            if (c->error()) {
                complete(std::move(w.handler), c->error(), vm::vsock_stream{});
            } else {
                attached_[it->first] = true;
                complete(std::move(w.handler), error_code{}, make_stream_(c->ends()));
            }
        }
        it = connecting_.erase(it);
        changed = true;
    }
    // Guest-initiated connections for waiting acceptors.
    for (auto& [port, waiters] : accepting_) {
        while (!waiters.empty()) {
            auto ep = muxer_.take_accepted(port);
            if (!ep) break;
            attached_[key_of(*ep)] = true;
            complete(std::move(waiters.front().handler), error_code{}, make_stream_(*ep));
            waiters.pop_front();
            changed = true;
        }
    }
    // Reads and writes on established streams.
    for (auto& [k, io] : io_) {
        auto* c = muxer_.find({muxer_.guest_cid(), k.first, k.second});
        if (io.reader) {
            std::size_t total = 0;
            for (auto& b : io.read_buffers) total += b.size();
            error_code ec;
            std::size_t n = 0;
            bool done = true;
            if (total == 0) {
            } else if (!c) {
                ec = vsock::vsock_errc::connection_closed;
            } else if (c->readable() > 0) {
                for (auto& b : io.read_buffers) {
                    n += c->read(std::span(static_cast<std::uint8_t*>(b.data()), b.size()));
                    if (c->readable() == 0) break;
                }
            } else if (c->error()) {
                ec = c->error();
            } else if (c->peer_done_sending() || c->current_state() == vsock::connection::state::closed) {
                ec = asio::error::eof;
            } else {
                done = false;
            }
            if (done) {
                auto h = std::move(*io.reader);
                io.reader.reset();
                complete(std::move(h), ec, n);
                changed = true;
            }
        }
        if (io.writer) {
            std::size_t total = 0;
            for (auto& b : io.write_buffers) total += b.size();
            error_code ec;
            std::size_t n = 0;
            bool done = true;
            if (total == 0) {
            } else if (!c || c->current_state() == vsock::connection::state::closed) {
                ec = c && c->error() ? c->error() : error_code(vsock::vsock_errc::connection_closed);
            } else if (c->writable() > 0) {
                for (auto& b : io.write_buffers) {
                    auto took = c->write(std::span(static_cast<const std::uint8_t*>(b.data()), b.size()));
                    n += took;
                    if (took < b.size()) break;
                }
            } else {
                done = false;  // the send buffer is full: the guest's credit decides when it drains
            }
            if (done) {
                auto h = std::move(*io.writer);
                io.writer.reset();
                complete(std::move(h), ec, n);
                changed = true;
            }
        }
    }
    if (changed) last_activity_ = vsock_clock::now();
    return changed;
}

}  // namespace mimobox::vmm
