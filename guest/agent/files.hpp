// File operations, one per connection. Data moves in file_data frames of at most
// max_data_chunk bytes, so no file size is buffered whole on either side.
#pragma once

#include "wire.hpp"

namespace mimobox::agent::guest {

void serve_file(int conn, const file_request& f, frame_reader& reader);

}  // namespace mimobox::agent::guest
