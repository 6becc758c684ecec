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
 * Entries that are not signature-verification keys wsgate implements are skipped: `use` other
 * than `sig`, `key_ops` without `verify`, key types other than `oct`/`RSA`/`EC`/`OKP`, curves
 * other than P-256/P-384/P-521/Ed25519, and an `alg` wsgate does not know. Each kept key is
 * bound to its `alg` member or, absent that, to the default algorithm of its type (see
 * Key::from_jwk). Pass the result to Verifier::allow().
 *
 * A kept key that is invalid refuses the whole document (no partial key set); so do two kept
 * keys with the same `kid`.
 *
 * @code
 * verifier.allow(wsgate::jwt::parse_jwks(document_text));
 * @endcode
 * @throws std::invalid_argument if the document is not JSON, has no `keys` array, an entry is
 *         not an object, a kept key is invalid (bad base64url, wrong coordinate length, RSA
 *         modulus below 2048 bits or exponent even or below 3, short HMAC secret, ...; the
 *         message names the entry's index), or two kept keys share a `kid`.
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::vector<Key> parse_jwks(std::string_view document);

/// As parse_jwks(std::string_view) but reports failure as jwt_errc::malformed in `ec`.
[[nodiscard]] std::vector<Key> parse_jwks(std::string_view document, std::error_code& ec) noexcept;

}  // namespace wsgate::jwt
