#pragma once
/** @file jwks.hpp JSON Web Key Sets (RFC 7517 §5): keys selected by `kid`. */

#include <wsgate/auth/jwt.hpp>

#include <string_view>
#include <system_error>
#include <vector>

namespace wsgate::jwt {

/**
 * The verification keys of a JWKS document (`{"keys":[...]}`).
 *
 * Keys with `"use":"enc"`, key types other than `oct`/`RSA`/`EC`, and curves other than
 * P-256/P-384 are skipped; each kept key is bound to its `alg` member or, absent that, to the
 * default algorithm of its type (see Key::from_jwk). Pass the result to Verifier::allow().
 *
 * @code
 * verifier.allow(wsgate::jwt::parse_jwks(document_text));
 * @endcode
 * @throws std::invalid_argument if the document is not JSON, has no `keys` array, or a kept
 *         key is invalid (bad base64url, wrong coordinate length, short RSA modulus).
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::vector<Key> parse_jwks(std::string_view document);

/// As parse_jwks(std::string_view) but reports failure as jwt_errc::malformed in `ec`.
[[nodiscard]] std::vector<Key> parse_jwks(std::string_view document, std::error_code& ec) noexcept;

}  // namespace wsgate::jwt
