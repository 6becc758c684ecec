#pragma once
/** @file random.hpp Unguessable identifiers from the operating system's CSPRNG. */

#include <wsgate/detail/config.hpp>

#include <cstddef>
#include <string>

namespace wsgate {

/**
 * `bytes` random bytes from the operating system's CSPRNG (`getrandom(2)` on Linux, `arc4random_buf(3)`
 * on macOS and the BSDs, `std::random_device` elsewhere), base64url-encoded without padding.
 * @throws std::runtime_error if the CSPRNG fails (never falls back to a weak source).
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::string random_token(std::size_t bytes = 16);

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/random-inl.hpp>
#endif
