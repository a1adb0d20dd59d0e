// The requests a pool keeps waiting for capacity (restore_pool: a shell; vm_pool: an idle
// sandbox), oldest first. Each may carry a deadline and the caller's cancellation slot; either
// takes it out of the queue with a typed error. Everything but `connect_cancellation` runs on
// the pool's strand.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

namespace mimobox::vm::detail {

/// `Result` is what a served request gets (a pooled handle; default-constructed on failure),
/// `Request` what the pool needs to serve it. An `Owner` (the pool's state, shared-owned)
/// provides `abort_waiter(id, ec)`, which forwards to `abort`: the queue's callbacks hold the
/// owner weakly, so a pool gone first makes them do nothing.
template <class Result, class Request>
class waiter_queue {
public:
    using error_code = boost::system::error_code;
    using handler_type = boost::asio::any_completion_handler<void(error_code, Result)>;
    using strand_type = boost::asio::strand<boost::asio::any_io_executor>;

    struct waiter {
        std::uint64_t id = 0;
        Request request;
        handler_type handler;
        std::shared_ptr<boost::asio::steady_timer> deadline;  // null: waits as long as it takes
    };

    explicit waiter_queue(strand_type strand) : strand_(std::move(strand)) {}

    /// On the initiating thread, before the request is posted to the strand, so a cancellation
    /// emitted right after initiation still finds it. Returns the request's id.
    template <class Owner>
    std::uint64_t connect_cancellation(handler_type& h, std::weak_ptr<Owner> owner) {
        const auto id = next_id_.fetch_add(1, std::memory_order_relaxed);
        auto slot = boost::asio::get_associated_cancellation_slot(h);
        if (slot.is_connected())
            slot.assign([owner = std::move(owner), strand = strand_, id](boost::asio::cancellation_type type) {
                using ct = boost::asio::cancellation_type;
                if (!(type & (ct::terminal | ct::partial))) return;
                if (auto self = owner.lock())
                    boost::asio::post(strand, [self, id] { self->abort_waiter(id, boost::asio::error::operation_aborted); });
            });
        return id;
    }

    /// Queues a request; after `timeout` (when positive) it fails with `timeout_error`.
    template <class Owner>
    void push(std::uint64_t id, Request request, handler_type h, std::chrono::steady_clock::duration timeout, error_code timeout_error,
              std::weak_ptr<Owner> owner) {
        auto& w = waiters_.emplace_back(waiter{id, std::move(request), std::move(h), nullptr});
        if (timeout.count() <= 0) return;
        w.deadline = std::make_shared<boost::asio::steady_timer>(strand_, timeout);
        w.deadline->async_wait([owner = std::move(owner), id, timeout_error](error_code ec) {
            if (ec) return;  // cancelled: served or aborted already
            if (auto self = owner.lock()) self->abort_waiter(id, timeout_error);
        });
    }

    bool empty() const noexcept { return waiters_.empty(); }
    std::size_t size() const noexcept { return waiters_.size(); }

    /// The oldest request, out of the queue with its deadline and cancellation disconnected.
    waiter pop_front() {
        auto w = std::move(waiters_.front());
        waiters_.pop_front();
        disarm(w);
        return w;
    }

    /// Fails the request `id` with `ec` if it still waits.
    void abort(std::uint64_t id, error_code ec) {
        for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
            if (it->id != id) continue;
            auto w = std::move(*it);
            waiters_.erase(it);
            disarm(w);
            return fail(std::move(w.handler), ec);
        }
    }

    /// Fails every waiting request with `ec` (the pool stops, or cannot make capacity).
    void abort_all(error_code ec) {
        for (auto& w : std::exchange(waiters_, {})) {
            disarm(w);
            fail(std::move(w.handler), ec);
        }
    }

    /// Completes through post: the handler runs on its associated executor (else the pool's
    /// strand), never inside an initiating function.
    void succeed(handler_type h, Result r) { boost::asio::post(strand_, boost::asio::append(std::move(h), error_code{}, std::move(r))); }
    void fail(handler_type h, error_code ec) {
        boost::asio::get_associated_cancellation_slot(h).clear();
        boost::asio::post(strand_, boost::asio::append(std::move(h), ec, Result()));
    }

private:
    static void disarm(waiter& w) {
        if (w.deadline) w.deadline->cancel();
        boost::asio::get_associated_cancellation_slot(w.handler).clear();
    }

    strand_type strand_;
    std::deque<waiter> waiters_;
    std::atomic<std::uint64_t> next_id_{1};
};

/// What a pooled handle does when it lets go of its VM: tells the pool, if it still exists, that
/// capacity came back. Never throws (handles release in destructors).
template <class Pool>
void return_capacity(std::weak_ptr<Pool>& pool) noexcept {
    if (auto p = pool.lock()) {
        try {
            p->released();
        } catch (...) {
            // Out of memory posting: the capacity stays counted, which only makes the pool smaller.
        }
    }
    pool.reset();
}

}  // namespace mimobox::vm::detail
