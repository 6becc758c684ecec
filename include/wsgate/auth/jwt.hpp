#pragma once
/**
 * @file jwt.hpp JSON Web Tokens: strict compact-JWS decoding, verification and signing
 * (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA with Ed25519), on OpenSSL.
 *
 * @code
 * auto verifier = wsgate::jwt::Verifier{}
 *                     .allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, secret))
 *                     .with_issuer("https://auth.example.com")
 *                     .with_audience("game")
 *                     .leeway(std::chrono::seconds{30})
 *                     .with_clock(clock);
 * wsgate::jwt::Token token;
 * if (std::error_code ec = verifier.verify(text, token)) { ... ec == wsgate::jwt_errc::expired ... }
 * @endcode
 */

#include <wsgate/auth/jwt_error.hpp>
#include <wsgate/clock.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace wsgate::jwt {

/// The signature algorithms wsgate implements (RFC 7518 §3.1 and RFC 8037 §3.1 names).
/// `eddsa` is EdDSA with Ed25519 keys only.
enum class Algorithm { hs256, hs384, hs512, rs256, rs384, rs512, es256, es384, ps256, ps384, ps512, es512, eddsa };

/// `"HS256"`, `"RS384"`, `"ES256"`, `"PS512"`, `"EdDSA"`, ...
[[nodiscard]] std::string_view to_string(Algorithm a) noexcept;
/// Exact (case-sensitive) inverse of to_string(); `none` and anything unknown give nullopt.
[[nodiscard]] std::optional<Algorithm> algorithm_from_string(std::string_view s) noexcept;

/// The default maximum token length a Verifier accepts (8 KiB).
inline constexpr std::size_t default_max_token_length = 8 * 1024;

/// The default maximum nesting depth of the header and claims JSON (the top-level object is
/// depth 1). Checked before parsing and independent of the length limit.
inline constexpr std::size_t default_max_json_depth = 32;

/// The shortest HMAC secret accepted for `alg`: the hash output size (RFC 7518 §3.2), i.e. 32,
/// 48 and 64 bytes for HS256, HS384 and HS512; 0 for other algorithms.
[[nodiscard]] std::size_t min_hmac_secret_bytes(Algorithm alg) noexcept;

namespace detail {
struct KeyMaterial;
}

/**
 * A verification key bound to exactly one algorithm: a token is checked with a key only when
 * its `alg` header names that key's algorithm, so the algorithm never comes from the token alone.
 *
 * Construction throws `std::invalid_argument` on misconfiguration; exception texts never contain
 * key material. Refused: an HMAC secret shorter than the hash output (min_hmac_secret_bytes());
 * an unreadable PEM; an RSA key with a modulus below 2048 bits or a public exponent that is
 * even or below 3; an EC key on a curve other than the algorithm's (P-256, P-384, P-521); an
 * EdDSA key that is not Ed25519; a key type that does not fit the algorithm; a JWK whose `use`
 * is not `sig` or whose `key_ops` lacks `verify`, or whose `alg` differs from the one asked for.
 *
 * Made by hmac(), public_key_pem() or from_jwk(), each naming the algorithm:
 * `Key::hmac(Algorithm::hs256, secret)`, `Key::public_key_pem(Algorithm::rs256, pem)`.
 * @par Thread Safety Immutable; copies share the key and may be used from any thread.
 */
class Key {
public:
    /// An HMAC key (`alg` must be HS256, HS384 or HS512; the secret at least the hash size).
    [[nodiscard]] static Key hmac(Algorithm alg, std::string_view secret);
    /// A public key from PEM (`BEGIN PUBLIC KEY`, or a private key whose public half is used);
    /// `alg` must be RS*, PS*, ES* or EdDSA.
    [[nodiscard]] static Key public_key_pem(Algorithm alg, std::string_view pem);
    /**
     * A key from one JWK (RFC 7517, RFC 8037): `kty` `oct` (`k`), `RSA` (`n`, `e`), `EC` (`crv`
     * P-256/P-384/P-521, `x`, `y`) or `OKP` (`crv` Ed25519, `x`). The algorithm is `alg` if given,
     * else the JWK's `alg` member, else HS256 / RS256 / ES256, ES384, ES512 / EdDSA by key type
     * and curve; when both are given they must agree. A `use` other than `sig`, or `key_ops`
     * without `verify`, marks a key that is not for verifying signatures: refused. The JWK's
     * `kid` becomes the key's kid.
     */
    [[nodiscard]] static Key from_jwk(const nlohmann::json& jwk, std::optional<Algorithm> alg = std::nullopt);

    /// A copy of this key that answers to the `kid` header `kid`.
    [[nodiscard]] Key with_kid(std::string kid) const;

    [[nodiscard]] Algorithm algorithm() const noexcept;
    /// The key id; empty if the key has none (it then matches only tokens without a `kid`,
    /// unless the Verifier opts in with Verifier::kidless_keys_match_any_kid()).
    [[nodiscard]] const std::string& kid() const noexcept { return kid_; }

    /// Internal: the OpenSSL side of the key.
    [[nodiscard]] const detail::KeyMaterial& material() const noexcept { return *material_; }

private:
    explicit Key(std::shared_ptr<const detail::KeyMaterial> m) : material_(std::move(m)) {}
    std::shared_ptr<const detail::KeyMaterial> material_;
    std::string kid_;
    friend class SigningKey;
};

/// Deprecated shorthands for Key::hmac and Key::public_key_pem (removed in 0.3).
[[nodiscard, deprecated("use Key::hmac(Algorithm::hs256, secret)")]] Key hs256_key(std::string_view secret);
[[nodiscard, deprecated("use Key::hmac(Algorithm::hs384, secret)")]] Key hs384_key(std::string_view secret);
[[nodiscard, deprecated("use Key::hmac(Algorithm::hs512, secret)")]] Key hs512_key(std::string_view secret);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::rs256, pem)")]] Key rs256_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::rs384, pem)")]] Key rs384_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::rs512, pem)")]] Key rs512_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::es256, pem)")]] Key es256_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::es384, pem)")]] Key es384_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::es512, pem)")]] Key es512_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::ps256, pem)")]] Key ps256_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::ps384, pem)")]] Key ps384_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::ps512, pem)")]] Key ps512_key(std::string_view public_pem);
[[nodiscard, deprecated("use Key::public_key_pem(Algorithm::eddsa, pem)")]] Key eddsa_key(std::string_view public_pem);

/**
 * A signing key bound to one algorithm, so hosts can issue tokens.
 * Made by hmac(), private_key_pem() or from_jwk(), as Key: `SigningKey::hmac(Algorithm::hs256,
 * secret)`; verification_key() gives the matching Key.
 * Construction throws `std::invalid_argument` as Key does.
 * @par Thread Safety Immutable; safe to share between threads.
 */
class SigningKey {
public:
    /// An HMAC signing key (HS256/384/512; the secret at least the hash size).
    [[nodiscard]] static SigningKey hmac(Algorithm alg, std::string_view secret);
    /// A private key from PEM (PKCS#8 `BEGIN PRIVATE KEY`, or traditional RSA/EC PEM); RS*, PS*,
    /// ES* or EdDSA (Ed25519).
    [[nodiscard]] static SigningKey private_key_pem(Algorithm alg, std::string_view pem);
    /// A private JWK: `oct` (`k`), `RSA` (`n`,`e`,`d`,`p`,`q`,`dp`,`dq`,`qi`), `EC` (`crv`,`x`,`y`,`d`)
    /// or `OKP` (`crv` Ed25519, `x`, `d`); algorithm and kid as Key::from_jwk. A `use` other than
    /// `sig`, or `key_ops` without `sign`, is refused.
    [[nodiscard]] static SigningKey from_jwk(const nlohmann::json& jwk, std::optional<Algorithm> alg = std::nullopt);

    /// A copy that writes `kid` into the headers it signs.
    [[nodiscard]] SigningKey with_kid(std::string kid) const;
    [[nodiscard]] Algorithm algorithm() const noexcept;
    [[nodiscard]] const std::string& kid() const noexcept { return kid_; }
    /// The matching verification key (same secret for HMAC, the public half otherwise), same kid.
    [[nodiscard]] Key verification_key() const;
    /// Public key as PEM (`BEGIN PUBLIC KEY`); empty for HMAC keys.
    [[nodiscard]] std::string public_key_pem() const;

    [[nodiscard]] const detail::KeyMaterial& material() const noexcept { return *material_; }

private:
    explicit SigningKey(std::shared_ptr<const detail::KeyMaterial> m) : material_(std::move(m)) {}
    std::shared_ptr<const detail::KeyMaterial> material_;
    std::string kid_;
    friend class Key;
};

/// Deprecated shorthands for SigningKey::hmac and SigningKey::private_key_pem (removed in 0.3).
[[nodiscard, deprecated("use SigningKey::hmac(Algorithm::hs256, secret)")]] SigningKey
hs256_signing_key(std::string_view secret);
[[nodiscard, deprecated("use SigningKey::private_key_pem(Algorithm::rs256, pem)")]] SigningKey
rs256_signing_key(std::string_view private_pem);
[[nodiscard, deprecated("use SigningKey::private_key_pem(Algorithm::es256, pem)")]] SigningKey
es256_signing_key(std::string_view private_pem);

/**
 * Signs `claims` (a JSON object) as a compact JWS with header
 * `{"alg":...,"typ":"JWT"[,"kid":...]}` merged with `extra_header`.
 * @throws std::invalid_argument if `claims` or `extra_header` is not an object, or
 *         `extra_header` tries to set `alg`; std::runtime_error if OpenSSL fails.
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::string sign(const nlohmann::json& claims, const SigningKey& key,
                               const nlohmann::json& extra_header = nlohmann::json::object());

/**
 * Signs the exact bytes given: `base64url(header_json) '.' base64url(payload) '.' signature`.
 * The header is not inspected; callers choose its `alg` (used by tests and by hosts that need
 * byte-exact headers).
 * @throws std::runtime_error if OpenSSL fails.
 */
[[nodiscard]] std::string sign_compact(std::string_view header_json, std::string_view payload,
                                       const SigningKey& key);

/**
 * A decoded token: its JOSE header and claims set. Typed accessors never throw; a claim of
 * another type reads as absent.
 * @par Thread Safety Value type.
 */
struct Token {
    nlohmann::json header = nlohmann::json::object();
    nlohmann::json claims = nlohmann::json::object();

    /// The `alg` header (empty if absent).
    [[nodiscard]] std::string algorithm() const;
    /// The `kid` header (empty if absent).
    [[nodiscard]] std::string kid() const;
    /// True if the claims set has `name`.
    [[nodiscard]] bool has_claim(const std::string& name) const noexcept { return claims.contains(name); }

    /**
     * The claim `name` as `T`, or nullopt if it is absent or of another JSON type.
     * `T` may be std::string, bool, an integer type (JSON integers only), double (any number),
     * std::vector<std::string> (an array of strings) or nlohmann::json (anything).
     */
    template <class T>
    [[nodiscard]] std::optional<T> claim(const std::string& name) const noexcept {
        auto it = claims.find(name);
        if (it == claims.end()) return std::nullopt;
        const nlohmann::json& v = *it;
        if constexpr (std::is_same_v<T, nlohmann::json>) {
            return v;
        } else if constexpr (std::is_same_v<T, std::string>) {
            if (!v.is_string()) return std::nullopt;
            return v.template get_ref<const std::string&>();
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!v.is_boolean()) return std::nullopt;
            return v.template get<bool>();
        } else if constexpr (std::is_integral_v<T>) {
            if (v.is_number_unsigned()) {
                auto u = v.template get<std::uint64_t>();
                if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
                return static_cast<T>(u);
            }
            if (!v.is_number_integer()) return std::nullopt;
            auto i = v.template get<std::int64_t>();
            if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
                (i > 0 && static_cast<std::uint64_t>(i) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())))
                return std::nullopt;
            return static_cast<T>(i);
        } else if constexpr (std::is_floating_point_v<T>) {
            if (!v.is_number()) return std::nullopt;
            return v.template get<T>();
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            if (!v.is_array()) return std::nullopt;
            std::vector<std::string> out;
            out.reserve(v.size());
            for (const auto& e : v) {
                if (!e.is_string()) return std::nullopt;
                out.push_back(e.template get_ref<const std::string&>());
            }
            return out;
        } else {
            static_assert(std::is_same_v<T, void>, "unsupported claim type");
        }
    }

    /// `exp`, `nbf`, `iat` as time points (nullopt if absent or not a number).
    [[nodiscard]] std::optional<TimePoint> expires_at() const noexcept;
    [[nodiscard]] std::optional<TimePoint> not_before() const noexcept;
    [[nodiscard]] std::optional<TimePoint> issued_at() const noexcept;
    /// `aud` as a list (a single string gives one element; absent or invalid gives none).
    [[nodiscard]] std::vector<std::string> audience() const;
};

/**
 * Decodes a compact JWS without checking its signature or claims (for inspection only).
 * Applies the same strict framing as Verifier: three segments, unpadded canonical base64url,
 * a header that is a JSON object without duplicate top-level members, a string `alg`, no
 * `crit`; header and payload JSON nested at most `max_depth` deep.
 * @return an empty error_code, or jwt_errc::too_long, jwt_errc::malformed (broken framing or
 *         header), jwt_errc::too_deep, or jwt_errc::invalid_claims_set (the payload is not a JSON
 *         object without duplicate members). Never throws.
 */
[[nodiscard]] std::error_code decode(std::string_view token, Token& out,
                                     std::size_t max_length = default_max_token_length,
                                     std::size_t max_depth = default_max_json_depth) noexcept;

/**
 * Verifies tokens against a set of keys and claim rules, configured builder-style.
 *
 * Checks, in order: length; framing and header depth (see decode()); header `alg`/`kid` against
 * the keys; the signature (constant-time for MACs); the claims set (a JSON object within the
 * depth limit, else invalid_claims_set / too_deep); then the claims:
 * `exp` (now < exp + leeway), `nbf` and `iat` (≤ now + leeway), `iss` (one of the configured
 * issuers, if any), `aud` (shares a value with the configured audiences; a token with `aud`
 * is refused by a verifier without audiences, RFC 7519 §4.1.3), required claims.
 *
 * Key selection: a token with a `kid` is checked only with the key of that kid (kids are unique
 * in a Verifier); keys without a kid serve such a token only if no key has its kid and
 * kidless_keys_match_any_kid() is on. A token without `kid` is checked with every key of its
 * algorithm. No candidate gives unknown_key; candidates all bound to other algorithms give
 * disallowed_algorithm.
 *
 * @par Thread Safety
 * Configure from one thread; afterwards verify() is const and safe to call concurrently.
 * Copies share keys (and their pooled OpenSSL contexts).
 */
class Verifier {
public:
    Verifier();

    /// Accepts tokens signed with `key` (repeatable: key rotation, several issuers).
    /// @throws std::invalid_argument if a key with the same non-empty kid is already allowed.
    Verifier& allow(Key key);
    /// Accepts tokens signed with any key of `keys`.
    /// @throws std::invalid_argument on a duplicate non-empty kid (nothing is added then).
    Verifier& allow(const std::vector<Key>& keys);
    /// Requires `iss` to equal `issuer` (repeatable: any of them).
    Verifier& with_issuer(std::string issuer);
    /// Requires `aud` to contain `audience` (repeatable: any of them).
    Verifier& with_audience(std::string audience);
    /// Tolerance for `exp`, `nbf` and `iat` (default 0).
    Verifier& leeway(std::chrono::seconds s);
    /// Requires claim `name` to be present (e.g. `exp`, `sub`).
    Verifier& require_claim(std::string name);
    /// Longest token accepted, in bytes (default 8 KiB).
    Verifier& max_length(std::size_t bytes);
    /// Deepest nesting of header and claims JSON accepted (default default_max_json_depth, 32;
    /// at least 1).
    Verifier& max_depth(std::size_t depth);
    /**
     * Lets keys without a kid verify tokens whose `kid` names no allowed key (default off: a
     * key without kid then serves only tokens without `kid`). For hosts whose issuer stamps a
     * kid that they do not track, e.g. a single shared HMAC secret.
     */
    Verifier& kidless_keys_match_any_kid(bool on = true);
    /// The time source for `exp`/`nbf`/`iat` (default: the system clock).
    Verifier& with_clock(std::shared_ptr<const Clock> clock);

    /// Verifies `token`; on success fills `out` and returns an empty error_code. Never throws.
    [[nodiscard]] std::error_code verify(std::string_view token, Token& out) const noexcept;

    /// The configured keys.
    [[nodiscard]] const std::vector<Key>& keys() const noexcept { return keys_; }

private:
    std::vector<Key> keys_;
    std::vector<std::string> issuers_;
    std::vector<std::string> audiences_;
    std::vector<std::string> required_;
    std::chrono::seconds leeway_{0};
    std::size_t max_length_ = default_max_token_length;
    std::size_t max_depth_ = default_max_json_depth;
    bool kidless_any_kid_ = false;
    std::shared_ptr<const Clock> clock_;
};

/// Unpadded base64url (RFC 4648 §5) of `bytes`.
[[nodiscard]] std::string base64url_encode(std::string_view bytes);
/// Strict unpadded base64url decoding: no `=`, no whitespace, canonical trailing bits.
/// @return false on any deviation. Never throws (except std::bad_alloc).
[[nodiscard]] bool base64url_decode(std::string_view text, std::string& out);

}  // namespace wsgate::jwt
