// wsgate::jwt keys on OpenSSL 3: HMAC via EVP_MAC, RSA/EC/Ed25519 via EVP_PKEY + EVP_DigestVerify.

#include "key_material.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <stdexcept>

namespace wsgate::jwt {
namespace detail {
namespace {

EVP_MAC* hmac_algorithm() noexcept {
    static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    return mac;
}

const char* digest_name(Algorithm a) noexcept {
    switch (a) {
        case Algorithm::hs256: return "SHA256";
        case Algorithm::hs384: return "SHA384";
        case Algorithm::hs512: return "SHA512";
        default: break;
    }
    return "SHA256";
}

struct BnDeleter {
    void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;

struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// JOSE r||s → DER ECDSA-Sig-Value.
bool jose_to_der(std::string_view sig, std::size_t n, std::string& der) {
    if (sig.size() != 2 * n) return false;
    auto* bytes = reinterpret_cast<const unsigned char*>(sig.data());
    BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(n), nullptr);
    BIGNUM* s = BN_bin2bn(bytes + n, static_cast<int>(n), nullptr);
    ECDSA_SIG* es = ECDSA_SIG_new();
    if (r == nullptr || s == nullptr || es == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return false;
    }
    int len = i2d_ECDSA_SIG(es, nullptr);
    bool ok = false;
    if (len > 0) {
        der.resize(static_cast<std::size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(der.data());
        ok = i2d_ECDSA_SIG(es, &p) == len;
    }
    ECDSA_SIG_free(es);
    return ok;
}

// DER ECDSA-Sig-Value → JOSE r||s (each left-padded to n bytes).
bool der_to_jose(const unsigned char* der, std::size_t len, std::size_t n, std::string& out) {
    const unsigned char* p = der;
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
    if (es == nullptr) return false;
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(es, &r, &s);
    out.assign(2 * n, '\0');
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    bool ok = BN_bn2binpad(r, o, static_cast<int>(n)) == static_cast<int>(n) &&
              BN_bn2binpad(s, o + n, static_cast<int>(n)) == static_cast<int>(n);
    ECDSA_SIG_free(es);
    return ok;
}

// RFC 7518 §6.3.1: RSA public exponents are odd and greater than 1; an exponent of 1 makes the
// "signature" equal to the encoded message, so anyone could forge one.
bool rsa_exponent_ok(EVP_PKEY* pkey) {
    BIGNUM* e = nullptr;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 || e == nullptr) {
        ERR_clear_error();
        return false;
    }
    const bool ok = BN_is_odd(e) && !BN_is_one(e);
    BN_free(e);
    return ok;
}

std::string ec_group_name(EVP_PKEY* pkey) {
    std::array<char, 64> name{};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name.data(), name.size(), &len) != 1)
        return {};
    return std::string(name.data(), len);
}

}  // namespace

Family family_of(Algorithm a) noexcept {
    switch (a) {
        case Algorithm::hs256: case Algorithm::hs384: case Algorithm::hs512: return Family::hmac;
        case Algorithm::rs256: case Algorithm::rs384: case Algorithm::rs512:
        case Algorithm::ps256: case Algorithm::ps384: case Algorithm::ps512: return Family::rsa;
        case Algorithm::es256: case Algorithm::es384: case Algorithm::es512: return Family::ec;
        case Algorithm::eddsa: return Family::okp;
    }
    return Family::hmac;
}

bool is_pss(Algorithm a) noexcept { return a == Algorithm::ps256 || a == Algorithm::ps384 || a == Algorithm::ps512; }

const EVP_MD* digest_of(Algorithm a) noexcept {
    switch (a) {
        case Algorithm::hs256: case Algorithm::rs256: case Algorithm::es256: case Algorithm::ps256: return EVP_sha256();
        case Algorithm::hs384: case Algorithm::rs384: case Algorithm::es384: case Algorithm::ps384: return EVP_sha384();
        case Algorithm::hs512: case Algorithm::rs512: case Algorithm::es512: case Algorithm::ps512: return EVP_sha512();
        case Algorithm::eddsa: return nullptr;
    }
    return EVP_sha256();
}

std::size_t ec_coordinate_size(Algorithm a) noexcept {
    switch (a) {
        case Algorithm::es384: return 48;
        case Algorithm::es512: return 66;
        default: return 32;
    }
}

namespace {

// RFC 7518 §3.5: PSS with MGF1 over the same hash and a salt as long as the hash output. The
// salt length is pinned on verification too, so only the JOSE parameters verify.
bool configure_pss(EVP_PKEY_CTX* pctx, const EVP_MD* md) noexcept {
    return pctx != nullptr && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
}

}  // namespace

KeyMaterial::~KeyMaterial() {
    for (EVP_MAC_CTX* c : pool) EVP_MAC_CTX_free(c);
    EVP_MAC_CTX_free(hmac_proto);
}

bool KeyMaterial::hmac(std::string_view data, unsigned char* out, std::size_t& out_len) const noexcept {
    EVP_MAC_CTX* ctx = nullptr;
    {
        std::lock_guard<std::mutex> lock(pool_mutex);
        if (!pool.empty()) {
            ctx = pool.back();
            pool.pop_back();
        }
    }
    if (ctx == nullptr) {
        ctx = EVP_MAC_CTX_dup(hmac_proto);
        if (ctx == nullptr) return false;
    }
    // A NULL key re-initialises the keyed context without re-deriving the pads.
    bool ok = EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1 &&
              EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
              EVP_MAC_final(ctx, out, &out_len, EVP_MAX_MD_SIZE) == 1;
    if (!ok) {
        EVP_MAC_CTX_free(ctx);
        return false;
    }
    bool pooled = false;
    try {
        std::lock_guard<std::mutex> lock(pool_mutex);
        if (pool.size() < 64) {
            pool.push_back(ctx);
            pooled = true;
        }
    } catch (...) {
    }
    if (!pooled) EVP_MAC_CTX_free(ctx);
    return true;
}

bool KeyMaterial::verify(std::string_view data, std::string_view signature) const noexcept {
    try {
        if (family == Family::hmac) {
            std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
            std::size_t len = 0;
            if (!hmac(data, mac.data(), len)) return false;
            if (signature.size() != len) return false;
            return CRYPTO_memcmp(mac.data(), signature.data(), len) == 0;
        }
        std::string der;
        std::string_view sig = signature;
        if (family == Family::ec) {
            if (!jose_to_der(signature, ec_coordinate_size(alg), der)) return false;
            sig = der;
        }
        MdCtxPtr ctx{EVP_MD_CTX_new()};
        EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
        const EVP_MD* md = digest_of(alg);
        const bool ok =
            ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey.get()) == 1 &&
            (!is_pss(alg) || configure_pss(pctx, md)) &&
            EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
        // A refused signature leaves entries in the thread's OpenSSL error queue; other users of
        // OpenSSL on this thread (TLS) must not see them.
        if (!ok) ERR_clear_error();
        return ok;
    } catch (...) {
        return false;
    }
}

std::string KeyMaterial::sign(std::string_view data) const {
    if (family == Family::hmac) {
        std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
        std::size_t len = 0;
        if (!hmac(data, mac.data(), len)) throw std::runtime_error("wsgate::jwt: HMAC failed");
        return std::string(reinterpret_cast<const char*>(mac.data()), len);
    }
    if (!has_private) throw std::invalid_argument("wsgate::jwt: key has no private part");
    MdCtxPtr ctx{EVP_MD_CTX_new()};
    std::size_t len = 0;
    EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
    const EVP_MD* md = digest_of(alg);
    if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, pkey.get()) != 1 ||
        (is_pss(alg) && !configure_pss(pctx, md)) ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
        throw std::runtime_error("wsgate::jwt: signing failed");
    std::string out(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
        throw std::runtime_error("wsgate::jwt: signing failed");
    out.resize(len);
    if (family == Family::ec) {
        std::string jose;
        if (!der_to_jose(reinterpret_cast<const unsigned char*>(out.data()), out.size(), ec_coordinate_size(alg), jose))
            throw std::runtime_error("wsgate::jwt: signing failed");
        return jose;
    }
    return out;
}

std::shared_ptr<KeyMaterial> make_hmac_material(Algorithm alg, std::string_view secret) {
    if (family_of(alg) != Family::hmac) throw std::invalid_argument("wsgate::jwt: algorithm is not HMAC");
    // RFC 7518 §3.2: a key shorter than the hash output weakens the MAC; an issuer's short
    // secret is a configuration error to fix, not something to run with.
    if (secret.size() < min_hmac_secret_bytes(alg))
        throw std::invalid_argument("wsgate::jwt: " + std::string(to_string(alg)) + " secret is " +
                                    std::to_string(secret.size()) + " bytes; at least " +
                                    std::to_string(min_hmac_secret_bytes(alg)) + " are required (RFC 7518 §3.2)");
    auto m = std::make_shared<KeyMaterial>();
    m->alg = alg;
    m->family = Family::hmac;
    m->has_private = true;
    if (hmac_algorithm() == nullptr) throw std::runtime_error("wsgate::jwt: OpenSSL has no HMAC");
    m->hmac_proto = EVP_MAC_CTX_new(hmac_algorithm());
    if (m->hmac_proto == nullptr) throw std::runtime_error("wsgate::jwt: EVP_MAC_CTX_new failed");
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest_name(alg)), 0),
        OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(m->hmac_proto, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), params) != 1)
        throw std::runtime_error("wsgate::jwt: HMAC key setup failed");
    return m;
}

std::shared_ptr<KeyMaterial> make_pkey_material(Algorithm alg, EvpPkeyPtr pkey, bool has_private) {
    if (!pkey) throw std::invalid_argument("wsgate::jwt: no key");
    Family f = family_of(alg);
    if (f == Family::hmac) throw std::invalid_argument("wsgate::jwt: HMAC algorithm needs a secret, not a public key");
    if (f == Family::rsa) {
        if (EVP_PKEY_is_a(pkey.get(), "RSA") != 1)
            throw std::invalid_argument("wsgate::jwt: RS* and PS* algorithms need an RSA key");
        if (EVP_PKEY_get_bits(pkey.get()) < 2048)
            throw std::invalid_argument("wsgate::jwt: RSA key shorter than 2048 bits");
        if (!rsa_exponent_ok(pkey.get()))
            throw std::invalid_argument("wsgate::jwt: RSA public exponent must be odd and at least 3");
    } else if (f == Family::ec) {
        if (EVP_PKEY_is_a(pkey.get(), "EC") != 1)
            throw std::invalid_argument("wsgate::jwt: ES* algorithm needs an EC key");
        std::string group = ec_group_name(pkey.get());
        bool ok = false;
        switch (alg) {
            case Algorithm::es256: ok = group == "prime256v1" || group == "P-256"; break;
            case Algorithm::es384: ok = group == "secp384r1" || group == "P-384"; break;
            case Algorithm::es512: ok = group == "secp521r1" || group == "P-521"; break;
            default: break;
        }
        if (!ok) throw std::invalid_argument("wsgate::jwt: EC key is not on the algorithm's curve");
    } else {
        if (EVP_PKEY_is_a(pkey.get(), "ED25519") != 1)
            throw std::invalid_argument("wsgate::jwt: EdDSA needs an Ed25519 key");
    }
    auto m = std::make_shared<KeyMaterial>();
    m->alg = alg;
    m->family = f;
    m->has_private = has_private;
    m->pkey = std::move(pkey);
    return m;
}

}  // namespace detail

using detail::EvpPkeyPtr;

namespace {

struct BioDeleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};

EvpPkeyPtr read_pem(std::string_view pem, bool want_private, bool& is_private) {
    if (pem.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        throw std::invalid_argument("wsgate::jwt: PEM too large");
    std::unique_ptr<BIO, BioDeleter> bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
    if (!bio) throw std::runtime_error("wsgate::jwt: BIO_new_mem_buf failed");
    EVP_PKEY* k = nullptr;
    if (!want_private) {
        k = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
        if (k != nullptr) {
            is_private = false;
            return EvpPkeyPtr{k};
        }
        ERR_clear_error();
        BIO_reset(bio.get());
    }
    // Empty passphrase callback: an encrypted PEM fails instead of prompting on a terminal.
    k = PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
    if (k == nullptr) {
        ERR_clear_error();
        throw std::invalid_argument("wsgate::jwt: unreadable PEM key");
    }
    is_private = true;
    return EvpPkeyPtr{k};
}

detail::BnPtr bn_from_b64(const nlohmann::json& jwk, const char* member) {
    auto it = jwk.find(member);
    std::string raw;
    if (it == jwk.end() || !it->is_string() || !base64url_decode(it->get_ref<const std::string&>(), raw) || raw.empty())
        throw std::invalid_argument(std::string("wsgate::jwt: JWK member missing or not base64url: ") + member);
    detail::BnPtr bn{BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()), nullptr)};
    if (!bn) throw std::runtime_error("wsgate::jwt: BN_bin2bn failed");
    return bn;
}

std::string jwk_bytes(const nlohmann::json& jwk, const char* member) {
    auto it = jwk.find(member);
    std::string raw;
    if (it == jwk.end() || !it->is_string() || !base64url_decode(it->get_ref<const std::string&>(), raw))
        throw std::invalid_argument(std::string("wsgate::jwt: JWK member missing or not base64url: ") + member);
    return raw;
}

struct ParamBldDeleter {
    void operator()(OSSL_PARAM_BLD* p) const noexcept { OSSL_PARAM_BLD_free(p); }
};
struct ParamDeleter {
    void operator()(OSSL_PARAM* p) const noexcept { OSSL_PARAM_free(p); }
};
struct PkeyCtxDeleter {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};

EvpPkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, int selection = EVP_PKEY_PUBLIC_KEY) {
    std::unique_ptr<OSSL_PARAM, ParamDeleter> params{OSSL_PARAM_BLD_to_param(bld)};
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx{EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr)};
    EVP_PKEY* k = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &k, selection, params.get()) != 1) {
        ERR_clear_error();
        throw std::invalid_argument("wsgate::jwt: invalid JWK key parameters");
    }
    return EvpPkeyPtr{k};
}

}  // namespace

std::string_view to_string(Algorithm a) noexcept {
    switch (a) {
        case Algorithm::hs256: return "HS256";
        case Algorithm::hs384: return "HS384";
        case Algorithm::hs512: return "HS512";
        case Algorithm::rs256: return "RS256";
        case Algorithm::rs384: return "RS384";
        case Algorithm::rs512: return "RS512";
        case Algorithm::es256: return "ES256";
        case Algorithm::es384: return "ES384";
        case Algorithm::ps256: return "PS256";
        case Algorithm::ps384: return "PS384";
        case Algorithm::ps512: return "PS512";
        case Algorithm::es512: return "ES512";
        case Algorithm::eddsa: return "EdDSA";
    }
    return "";
}

std::optional<Algorithm> algorithm_from_string(std::string_view s) noexcept {
    static constexpr Algorithm all[] = {Algorithm::hs256, Algorithm::hs384, Algorithm::hs512, Algorithm::rs256,
                                        Algorithm::rs384, Algorithm::rs512, Algorithm::es256, Algorithm::es384,
                                        Algorithm::ps256, Algorithm::ps384, Algorithm::ps512, Algorithm::es512,
                                        Algorithm::eddsa};
    for (Algorithm a : all)
        if (to_string(a) == s) return a;
    return std::nullopt;
}

std::size_t min_hmac_secret_bytes(Algorithm alg) noexcept {
    switch (alg) {
        case Algorithm::hs256: return 32;
        case Algorithm::hs384: return 48;
        case Algorithm::hs512: return 64;
        default: return 0;
    }
}

Key Key::hmac(Algorithm alg, std::string_view secret) { return Key{detail::make_hmac_material(alg, secret)}; }

Key Key::public_key_pem(Algorithm alg, std::string_view pem) {
    if (detail::family_of(alg) == detail::Family::hmac)
        throw std::invalid_argument("wsgate::jwt: HMAC algorithm needs a secret, not a PEM key");
    bool is_private = false;
    auto pkey = read_pem(pem, false, is_private);
    // Only the public half is kept for verification.
    return Key{detail::make_pkey_material(alg, std::move(pkey), false)};
}

namespace {

struct JwkKey {
    std::shared_ptr<detail::KeyMaterial> material;
    std::string kid;
};

// RFC 7517 §4.2/§4.3: a key published for encryption, or for operations other than the one
// wanted, must not be used to verify (or make) signatures.
void check_jwk_purpose(const nlohmann::json& jwk, const char* op) {
    if (auto use = jwk.find("use"); use != jwk.end()) {
        if (!use->is_string()) throw std::invalid_argument("wsgate::jwt: JWK use is not a string");
        if (*use != "sig") throw std::invalid_argument("wsgate::jwt: JWK use is not \"sig\"");
    }
    if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
        if (!ops->is_array()) throw std::invalid_argument("wsgate::jwt: JWK key_ops is not an array");
        bool found = false;
        for (const auto& o : *ops) {
            if (!o.is_string()) throw std::invalid_argument("wsgate::jwt: JWK key_ops entry is not a string");
            found = found || o == op;
        }
        if (!found) throw std::invalid_argument(std::string("wsgate::jwt: JWK key_ops does not include \"") + op + "\"");
    }
}

// One JWK → key material; with `want_private` the private members (`d`, CRT values) are required.
JwkKey material_from_jwk(const nlohmann::json& jwk, std::optional<Algorithm> alg, bool want_private) {
    if (!jwk.is_object()) throw std::invalid_argument("wsgate::jwt: JWK is not an object");
    auto kty_it = jwk.find("kty");
    if (kty_it == jwk.end() || !kty_it->is_string()) throw std::invalid_argument("wsgate::jwt: JWK without kty");
    const std::string& kty = kty_it->get_ref<const std::string&>();
    check_jwk_purpose(jwk, want_private ? "sign" : "verify");
    if (auto a = jwk.find("alg"); a != jwk.end()) {
        if (!a->is_string()) throw std::invalid_argument("wsgate::jwt: JWK alg is not a string");
        auto named = algorithm_from_string(a->get_ref<const std::string&>());
        if (!named) throw std::invalid_argument("wsgate::jwt: JWK alg is not supported");
        // A key is bound to one algorithm (RFC 8725 §3.1); its own `alg` is that binding.
        if (alg && *alg != *named) throw std::invalid_argument("wsgate::jwt: JWK alg differs from the algorithm asked for");
        alg = named;
    }
    JwkKey out;
    const int selection = want_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
    if (kty == "oct") {
        std::string secret = jwk_bytes(jwk, "k");
        out.material = detail::make_hmac_material(alg.value_or(Algorithm::hs256), secret);
        OPENSSL_cleanse(secret.data(), secret.size());
    } else if (kty == "RSA") {
        std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld{OSSL_PARAM_BLD_new()};
        if (!bld) throw std::runtime_error("wsgate::jwt: OSSL_PARAM_BLD failed");
        std::vector<detail::BnPtr> keep;
        auto push = [&](const char* member, const char* param) {
            keep.push_back(bn_from_b64(jwk, member));
            if (OSSL_PARAM_BLD_push_BN(bld.get(), param, keep.back().get()) != 1)
                throw std::runtime_error("wsgate::jwt: OSSL_PARAM_BLD failed");
        };
        push("n", OSSL_PKEY_PARAM_RSA_N);
        push("e", OSSL_PKEY_PARAM_RSA_E);
        if (want_private) {
            push("d", OSSL_PKEY_PARAM_RSA_D);
            push("p", OSSL_PKEY_PARAM_RSA_FACTOR1);
            push("q", OSSL_PKEY_PARAM_RSA_FACTOR2);
            push("dp", OSSL_PKEY_PARAM_RSA_EXPONENT1);
            push("dq", OSSL_PKEY_PARAM_RSA_EXPONENT2);
            push("qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
        }
        out.material = detail::make_pkey_material(alg.value_or(Algorithm::rs256),
                                                  pkey_from_params("RSA", bld.get(), selection), want_private);
    } else if (kty == "EC") {
        auto crv_it = jwk.find("crv");
        if (crv_it == jwk.end() || !crv_it->is_string()) throw std::invalid_argument("wsgate::jwt: EC JWK without crv");
        const std::string& crv = crv_it->get_ref<const std::string&>();
        Algorithm def{};
        const char* group = nullptr;
        if (crv == "P-256") {
            def = Algorithm::es256;
            group = "prime256v1";
        } else if (crv == "P-384") {
            def = Algorithm::es384;
            group = "secp384r1";
        } else if (crv == "P-521") {
            def = Algorithm::es512;
            group = "secp521r1";
        } else {
            throw std::invalid_argument("wsgate::jwt: EC curve not supported");
        }
        Algorithm a = alg.value_or(def);
        std::size_t n = detail::ec_coordinate_size(a);
        std::string x = jwk_bytes(jwk, "x");
        std::string y = jwk_bytes(jwk, "y");
        if (x.size() != n || y.size() != n) throw std::invalid_argument("wsgate::jwt: EC coordinate of wrong length");
        std::string point = "\x04" + x + y;
        std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld{OSSL_PARAM_BLD_new()};
        if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
            throw std::runtime_error("wsgate::jwt: OSSL_PARAM_BLD failed");
        detail::BnPtr d;
        if (want_private) {
            d = bn_from_b64(jwk, "d");
            if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get()) != 1)
                throw std::runtime_error("wsgate::jwt: OSSL_PARAM_BLD failed");
        }
        out.material = detail::make_pkey_material(a, pkey_from_params("EC", bld.get(), selection), want_private);
    } else if (kty == "OKP") {
        // RFC 8037 §2: Ed25519 only; Ed448 and the X* (key agreement) curves are not signature keys here.
        auto crv_it = jwk.find("crv");
        if (crv_it == jwk.end() || !crv_it->is_string()) throw std::invalid_argument("wsgate::jwt: OKP JWK without crv");
        if (*crv_it != "Ed25519") throw std::invalid_argument("wsgate::jwt: OKP curve not supported");
        std::string x = jwk_bytes(jwk, "x");
        if (x.size() != 32) throw std::invalid_argument("wsgate::jwt: Ed25519 public key of wrong length");
        EVP_PKEY* k = nullptr;
        if (want_private) {
            std::string d = jwk_bytes(jwk, "d");
            if (d.size() != 32) throw std::invalid_argument("wsgate::jwt: Ed25519 private key of wrong length");
            k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(d.data()),
                                             d.size());
            OPENSSL_cleanse(d.data(), d.size());
            // The public half is derived from d; a JWK whose x does not match it is inconsistent.
            std::array<unsigned char, 32> derived{};
            std::size_t derived_len = derived.size();
            if (k != nullptr && (EVP_PKEY_get_raw_public_key(k, derived.data(), &derived_len) != 1 ||
                                 derived_len != 32 || CRYPTO_memcmp(derived.data(), x.data(), 32) != 0)) {
                EVP_PKEY_free(k);
                ERR_clear_error();
                throw std::invalid_argument("wsgate::jwt: Ed25519 JWK x does not match d");
            }
        } else {
            k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x.data()),
                                            x.size());
        }
        if (k == nullptr) {
            ERR_clear_error();
            throw std::invalid_argument("wsgate::jwt: invalid Ed25519 JWK");
        }
        out.material = detail::make_pkey_material(alg.value_or(Algorithm::eddsa), EvpPkeyPtr{k}, want_private);
    } else {
        throw std::invalid_argument("wsgate::jwt: JWK kty not supported");
    }
    auto kid = jwk.find("kid");
    if (kid != jwk.end() && kid->is_string()) out.kid = kid->get<std::string>();
    return out;
}

}  // namespace

Key Key::from_jwk(const nlohmann::json& jwk, std::optional<Algorithm> alg) {
    auto m = material_from_jwk(jwk, alg, false);
    Key key{std::move(m.material)};
    key.kid_ = std::move(m.kid);
    return key;
}

Key Key::with_kid(std::string kid) const {
    Key k = *this;
    k.kid_ = std::move(kid);
    return k;
}

Algorithm Key::algorithm() const noexcept { return material_->alg; }

Key hs256_key(std::string_view s) { return Key::hmac(Algorithm::hs256, s); }
Key hs384_key(std::string_view s) { return Key::hmac(Algorithm::hs384, s); }
Key hs512_key(std::string_view s) { return Key::hmac(Algorithm::hs512, s); }
Key rs256_key(std::string_view pem) { return Key::public_key_pem(Algorithm::rs256, pem); }
Key rs384_key(std::string_view pem) { return Key::public_key_pem(Algorithm::rs384, pem); }
Key rs512_key(std::string_view pem) { return Key::public_key_pem(Algorithm::rs512, pem); }
Key es256_key(std::string_view pem) { return Key::public_key_pem(Algorithm::es256, pem); }
Key es384_key(std::string_view pem) { return Key::public_key_pem(Algorithm::es384, pem); }
Key es512_key(std::string_view pem) { return Key::public_key_pem(Algorithm::es512, pem); }
Key ps256_key(std::string_view pem) { return Key::public_key_pem(Algorithm::ps256, pem); }
Key ps384_key(std::string_view pem) { return Key::public_key_pem(Algorithm::ps384, pem); }
Key ps512_key(std::string_view pem) { return Key::public_key_pem(Algorithm::ps512, pem); }
Key eddsa_key(std::string_view pem) { return Key::public_key_pem(Algorithm::eddsa, pem); }

SigningKey SigningKey::hmac(Algorithm alg, std::string_view secret) {
    return SigningKey{detail::make_hmac_material(alg, secret)};
}

SigningKey SigningKey::private_key_pem(Algorithm alg, std::string_view pem) {
    if (detail::family_of(alg) == detail::Family::hmac)
        throw std::invalid_argument("wsgate::jwt: HMAC algorithm needs a secret, not a PEM key");
    bool is_private = false;
    auto pkey = read_pem(pem, true, is_private);
    return SigningKey{detail::make_pkey_material(alg, std::move(pkey), true)};
}

SigningKey SigningKey::from_jwk(const nlohmann::json& jwk, std::optional<Algorithm> alg) {
    auto m = material_from_jwk(jwk, alg, true);
    SigningKey key{std::move(m.material)};
    key.kid_ = std::move(m.kid);
    return key;
}

SigningKey SigningKey::with_kid(std::string kid) const {
    SigningKey k = *this;
    k.kid_ = std::move(kid);
    return k;
}

Algorithm SigningKey::algorithm() const noexcept { return material_->alg; }

Key SigningKey::verification_key() const {
    // Sharing the material is sound: verification only reads the public half / the MAC key.
    Key k{material_};
    k.kid_ = kid_;
    return k;
}

std::string SigningKey::public_key_pem() const {
    if (material_->family == detail::Family::hmac) return {};
    std::unique_ptr<BIO, BioDeleter> bio{BIO_new(BIO_s_mem())};
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), material_->pkey.get()) != 1)
        throw std::runtime_error("wsgate::jwt: PEM_write_bio_PUBKEY failed");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

SigningKey hs256_signing_key(std::string_view s) { return SigningKey::hmac(Algorithm::hs256, s); }
SigningKey rs256_signing_key(std::string_view pem) { return SigningKey::private_key_pem(Algorithm::rs256, pem); }
SigningKey es256_signing_key(std::string_view pem) { return SigningKey::private_key_pem(Algorithm::es256, pem); }

}  // namespace wsgate::jwt
