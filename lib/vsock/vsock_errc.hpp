// How a vsock connection can fail: the public vsock_errc (mimobox/vm/error.hpp), under the
// name the vsock layer uses.
#pragma once

#include "mimobox/vm/error.hpp"

namespace mimobox::vsock {
using vm::vsock_errc;
}  // namespace mimobox::vsock
