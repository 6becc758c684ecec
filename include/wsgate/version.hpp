#pragma once
/** @file version.hpp wsgate's version. */

#define WSGATE_VERSION_MAJOR 0
#define WSGATE_VERSION_MINOR 1
#define WSGATE_VERSION_PATCH 0
#define WSGATE_VERSION_STRING "0.1.0"

namespace wsgate {
/// The library's version, `"MAJOR.MINOR.PATCH"`.
inline constexpr const char* version_string = WSGATE_VERSION_STRING;
}  // namespace wsgate
