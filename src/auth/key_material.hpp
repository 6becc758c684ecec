#pragma once
// OpenSSL side of wsgate::jwt keys. Private to src/auth: OpenSSL headers stay out of the
// public include tree.

#include <wsgate/auth/jwt.hpp>

#include <openssl/evp.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::jwt::detail {

enum class Family { hmac, rsa, ec, okp };

[[nodiscard]] Family family_of(Algorithm a) noexcept;
/// True for PS256/384/512 (RSASSA-PSS; RSA family).
[[nodiscard]] bool is_pss(Algorithm a) noexcept;
/// The digest of `a`; nullptr for EdDSA, which hashes internally.
[[nodiscard]] const EVP_MD* digest_of(Algorithm a) noexcept;
/// Bytes of r (and of s) in a JOSE ECDSA signature: 32, 48, 66 for ES256, ES384, ES512.
[[nodiscard]] std::size_t ec_coordinate_size(Algorithm a) noexcept;

struct EvpPkeyDeleter {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

/**
 * One key bound to one algorithm. HMAC keys keep a keyed EVP_MAC_CTX as a prototype and a
 * small pool of duplicates, so a verification re-initialises a ready context instead of
 * re-deriving the key pads.
 */
struct KeyMaterial {
    Algorithm alg{};
    Family family{};
    bool has_private = false;
    EvpPkeyPtr pkey;  // RSA / EC / Ed25519

    KeyMaterial() = default;
    KeyMaterial(const KeyMaterial&) = delete;
    KeyMaterial& operator=(const KeyMaterial&) = delete;
    ~KeyMaterial();

    /// HMAC over `data` into `out` (size = digest size). False if OpenSSL fails.
    bool hmac(std::string_view data, unsigned char* out, std::size_t& out_len) const noexcept;
    /// Verifies a JOSE signature (raw MAC, PKCS#1 v1.5, PSS, r||s, or Ed25519) over `data`.
    [[nodiscard]] bool verify(std::string_view data, std::string_view signature) const noexcept;
    /// Signs `data`; JOSE form (raw MAC, PKCS#1 v1.5, PSS, r||s, or Ed25519). Throws std::runtime_error.
    [[nodiscard]] std::string sign(std::string_view data) const;

    // HMAC state.
    EVP_MAC_CTX* hmac_proto = nullptr;
    mutable std::mutex pool_mutex;
    mutable std::vector<EVP_MAC_CTX*> pool;
};

/// Builds the material for `alg` from an EVP_PKEY, checking the key type, size and curve.
/// Throws std::invalid_argument.
[[nodiscard]] std::shared_ptr<KeyMaterial> make_pkey_material(Algorithm alg, EvpPkeyPtr pkey, bool has_private);
[[nodiscard]] std::shared_ptr<KeyMaterial> make_hmac_material(Algorithm alg, std::string_view secret);

}  // namespace wsgate::jwt::detail
