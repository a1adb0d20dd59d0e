// How every sandbox operation is started: a coroutine on the sandbox's strand, its result
// delivered through the handler's executor, and the handler's cancellation slot honoured for
// the cancellation types the operation declares.
//
// co_spawn alone lets only terminal cancellation through (Boost 1.81's default filter), and a
// user's emit may come from another thread than the strand. So the user's slot gets our own
// handler: it keeps the declared types, records them in operation_cancel and, on the strand,
// emits *terminal* into the coroutine for the types that stop the operation at once. Inner
// operations (vsock reads and writes, timers) therefore only ever see terminal, which they all
// support. An operation that stops at a boundary instead (a stdin write stops between frames
// on partial) leaves that type out of `immediate` and polls operation_cancel::requested.
//
// A cancellation that arrives between two inner operations makes the next one throw
// operation_aborted (Asio's throw_if_cancelled default); operations keep their state
// exception-safe for that, and the exception becomes the error code here.
#pragma once

#include "mimobox/vm/error.hpp"
#include "sandbox/sandbox_state.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

#include <exception>
#include <memory>

namespace mimobox::vm::detail {

/// The cancellation types an operation honours, and which of them stop it at once.
struct cancel_policy {
    asio::cancellation_type accepted = asio::cancellation_type::none;
    asio::cancellation_type immediate = asio::cancellation_type::none;
};
/// Stops at once on terminal or partial: the operation's effects may have happened in part,
/// the sandbox stays usable (each operation documents what it leaves).
inline constexpr cancel_policy terminal_or_partial{asio::cancellation_type::terminal | asio::cancellation_type::partial,
                                                   asio::cancellation_type::terminal | asio::cancellation_type::partial};
/// Also total: for operations with no effect in the guest (reads), stopping leaves nothing.
inline constexpr cancel_policy any_cancellation{asio::cancellation_type::all, asio::cancellation_type::all};
inline constexpr cancel_policy not_cancellable{};

/// What reaches a running operation of its caller's cancellation requests. Strand only.
struct operation_cancel {
    asio::cancellation_signal to_coroutine;
    asio::cancellation_type requested = asio::cancellation_type::none;
    bool requested_any(asio::cancellation_type t) const noexcept { return (requested & t) != asio::cancellation_type::none; }
};

/// The error an exception escaping an operation stands for: its own code for a system_error
/// (operation_aborted after a cancellation), not_enough_memory for bad_alloc, else
/// sandbox_errc::internal_error.
error_code error_from_exception(std::exception_ptr ep) noexcept;

template <class... Ts>
void spawn_operation(const std::shared_ptr<sandbox_state>& st, cancel_policy policy,
                     asio::awaitable<std::tuple<error_code, Ts...>> op,
                     asio::any_completion_handler<void(error_code, Ts...)> handler,
                     std::shared_ptr<operation_cancel> cancel = nullptr) {
    if (!st) {
        // An empty sandbox (default-constructed, moved from, or a released pooled_vm's): a
        // typed error, never inline. It has no executor of its own: the system executor hands
        // the completion to the handler's associated executor.
        asio::post(asio::system_executor(), asio::append(std::move(handler), error_code(lifecycle_errc::invalid_state), Ts{}...));
        return;
    }
    if (!cancel) cancel = std::make_shared<operation_cancel>();
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected() && policy.accepted != asio::cancellation_type::none) {
        slot.assign([cancel, strand = st->strand, policy](asio::cancellation_type type) {
            type = type & policy.accepted;
            if (type == asio::cancellation_type::none) return;
            asio::dispatch(strand, [cancel, type, policy] {
                cancel->requested = cancel->requested | type;
                if ((type & policy.immediate) != asio::cancellation_type::none)
                    cancel->to_coroutine.emit(asio::cancellation_type::terminal);
            });
        });
    }
    asio::co_spawn(st->strand, std::move(op),
                   asio::bind_cancellation_slot(
                       cancel->to_coroutine.slot(),
                       [strand = st->strand, cancel, slot, h = std::move(handler)](std::exception_ptr ep,
                                                                                   std::tuple<error_code, Ts...> result) mutable {
                           if (ep) result = std::tuple<error_code, Ts...>{error_from_exception(ep), Ts{}...};
                           // Done: the caller's slot no longer reaches us (the handler may be
                           // reused for another operation).
                           if (slot.is_connected()) slot.clear();
                           std::apply([&](auto&... v) { asio::post(strand, asio::append(std::move(h), std::move(v)...)); },
                                      result);
                       }));
}

}  // namespace mimobox::vm::detail
