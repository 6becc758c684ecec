#pragma once
/** @file jwt_error.hpp Why a token was refused: `jwt_errc`, its category and reason codes. */

#include <string_view>
#include <system_error>

namespace wsgate {

/**
 * Why a JSON Web Token was refused. Messages (category().message()) are fixed texts: they
 * never contain the token, key material or claim values.
 */
enum class jwt_errc {
    malformed = 1,         ///< broken framing: segments, base64url, header JSON, header fields
    bad_signature,         ///< the signature does not verify (includes empty or truncated ones)
    expired,               ///< `exp` is not after now − leeway
    not_yet_valid,         ///< `nbf` (or `iat`) is after now + leeway
    wrong_issuer,          ///< `iss` is not one of the configured issuers
    wrong_audience,        ///< `aud` names none of the configured audiences
    unknown_key,           ///< no configured key has the token's `kid`
    disallowed_algorithm,  ///< `alg` is `none`, unknown, or not the algorithm of any matching key
    missing_claim,         ///< a required claim is absent
    too_long,              ///< the token exceeds the verifier's maximum length
    invalid_claim,         ///< a registered claim has the wrong type (e.g. `exp` is a string)
    invalid_claims_set,    ///< the signature is fine but the payload is not a JSON object
                           ///< (not JSON, another JSON type, or duplicate members)
    too_deep,              ///< header or claims JSON nests deeper than the verifier's limit
};

/// The category of jwt_errc (name `"wsgate.jwt"`).
[[nodiscard]] const std::error_category& jwt_category() noexcept;

/// Makes a `std::error_code` from a jwt_errc.
[[nodiscard]] inline std::error_code make_error_code(jwt_errc e) noexcept {
    return {static_cast<int>(e), jwt_category()};
}

/**
 * The short, client-safe reason code for a jwt error, as AuthDecision::reason carries it:
 * `malformed_token`, `bad_signature`, `expired`, `not_yet_valid`, `wrong_issuer`,
 * `wrong_audience`, `unknown_key`, `disallowed_algorithm`, `missing_claim`, `token_too_long`,
 * `invalid_claim`, `invalid_claims_set`, `token_too_deep`; `invalid_token` for any other code.
 */
[[nodiscard]] std::string_view reason_code(std::error_code ec) noexcept;

}  // namespace wsgate

template <> struct std::is_error_code_enum<wsgate::jwt_errc> : std::true_type {};
