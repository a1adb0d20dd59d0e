// exec: one command per connection, its output streamed as produced.
#pragma once

#include "wire.hpp"

namespace mimobox::agent::guest {

/// Runs `e` and streams its output on `conn`; ends with an exit (or error) message unless the
/// host hung up, which kills the process group like a kill request does.
void serve_exec(int conn, const exec_request& e, frame_reader& reader);

}  // namespace mimobox::agent::guest
