// Library version.
#pragma once

#define MIMOBOX_VERSION_MAJOR 0
#define MIMOBOX_VERSION_MINOR 1
#define MIMOBOX_VERSION_PATCH 0

namespace mimobox::vm {
inline constexpr const char* version_string = "0.1.0";
}
