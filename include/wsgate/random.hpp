#pragma once
/** @file random.hpp Unguessable identifiers from OpenSSL's CSPRNG. */

#include <cstddef>
#include <string>

namespace wsgate {

/**
 * `bytes` random bytes from OpenSSL's `RAND_bytes`, base64url-encoded without padding.
 * @throws std::runtime_error if the CSPRNG fails (never falls back to a weak source).
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::string random_token(std::size_t bytes = 16);

}  // namespace wsgate
