// wsgate::jwt: strict compact-JWS framing, claim checks and signing. Cryptography is
// OpenSSL's (jwt_keys.cpp); only framing and claim rules live here.

#include "key_material.hpp"

#include <wsgate/auth/jwt.hpp>
#include <wsgate/detail/error_category.hpp>

#include <array>
#include <cmath>
#include <stdexcept>

namespace wsgate {

namespace {

std::string describe_jwt(jwt_errc e) {
    switch (e) {
        case jwt_errc::malformed: return "malformed token";
        case jwt_errc::bad_signature: return "signature does not verify";
        case jwt_errc::expired: return "token expired";
        case jwt_errc::not_yet_valid: return "token not yet valid";
        case jwt_errc::wrong_issuer: return "wrong issuer";
        case jwt_errc::wrong_audience: return "wrong audience";
        case jwt_errc::unknown_key: return "no key with the token's key id";
        case jwt_errc::disallowed_algorithm: return "algorithm not allowed";
        case jwt_errc::missing_claim: return "required claim missing";
        case jwt_errc::too_long: return "token too long";
        case jwt_errc::invalid_claim: return "claim of the wrong type";
        case jwt_errc::invalid_claims_set: return "claims set is not a JSON object";
        case jwt_errc::too_deep: return "token JSON nested too deeply";
    }
    return "unknown jwt error";
}

}  // namespace

const std::error_category& jwt_category() noexcept {
    return detail::error_category_of<jwt_errc, &describe_jwt>("wsgate.jwt");
}

std::string_view reason_code(std::error_code ec) noexcept {
    if (ec.category() != jwt_category()) return "invalid_token";
    switch (static_cast<jwt_errc>(ec.value())) {
        case jwt_errc::malformed: return "malformed_token";
        case jwt_errc::bad_signature: return "bad_signature";
        case jwt_errc::expired: return "expired";
        case jwt_errc::not_yet_valid: return "not_yet_valid";
        case jwt_errc::wrong_issuer: return "wrong_issuer";
        case jwt_errc::wrong_audience: return "wrong_audience";
        case jwt_errc::unknown_key: return "unknown_key";
        case jwt_errc::disallowed_algorithm: return "disallowed_algorithm";
        case jwt_errc::missing_claim: return "missing_claim";
        case jwt_errc::too_long: return "token_too_long";
        case jwt_errc::invalid_claim: return "invalid_claim";
        case jwt_errc::invalid_claims_set: return "invalid_claims_set";
        case jwt_errc::too_deep: return "token_too_deep";
    }
    return "invalid_token";
}

namespace jwt {

namespace {

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<signed char, 256> make_b64_table() {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(b64_alphabet[i])] = static_cast<signed char>(i);
    return t;
}
constexpr auto b64_table = make_b64_table();

struct Segments {
    std::string_view header, payload, signature, signing_input;
};

bool split(std::string_view token, Segments& s) noexcept {
    auto d1 = token.find('.');
    if (d1 == std::string_view::npos) return false;
    auto d2 = token.find('.', d1 + 1);
    if (d2 == std::string_view::npos) return false;
    if (token.find('.', d2 + 1) != std::string_view::npos) return false;  // JWE or junk
    s.header = token.substr(0, d1);
    s.payload = token.substr(d1 + 1, d2 - d1 - 1);
    s.signature = token.substr(d2 + 1);
    s.signing_input = token.substr(0, d2);
    return !s.header.empty() && !s.payload.empty();
}

struct JsonShape {
    std::size_t top_level_members = 0;  // meaningful only if the text is valid JSON
    bool too_deep = false;
};

// One pass over `text` outside strings: the `:` separators at nesting depth 1 (the members of
// the top-level object when the text is valid JSON), and whether any container opens deeper
// than `max_depth`. Runs before the parser so deep nesting costs no parser work at all.
JsonShape scan_json(std::string_view text, std::size_t max_depth) noexcept {
    JsonShape shape;
    std::size_t& count = shape.top_level_members;
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
            continue;
        }
        switch (c) {
            case '"': in_string = true; break;
            case '{': case '[':
                if (++depth > max_depth) {
                    shape.too_deep = true;
                    return shape;
                }
                break;
            case '}': case ']': if (depth > 0) --depth; break;
            case ':': if (depth == 1) ++count; break;
            default: break;
        }
    }
    return shape;
}

enum class ParseResult { ok, not_object, too_deep };

// Parses a JSON object, refusing duplicate top-level members (RFC 7515 §5.2 allows refusing them,
// and a duplicate `alg` or `exp` is how parser-differential attacks start). The parser keeps one
// of the duplicates, so a member count below the separator count reveals them.
ParseResult parse_object(std::string_view text, std::size_t max_depth, nlohmann::json& out) {
    const JsonShape shape = scan_json(text, max_depth);
    if (shape.too_deep) return ParseResult::too_deep;
    out = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (out.is_discarded() || !out.is_object() || out.size() != shape.top_level_members) return ParseResult::not_object;
    return ParseResult::ok;
}

// The payload is authenticated (or, in decode(), merely framed) by now: a bad claims set is not
// broken framing and gets its own code.
std::error_code parse_claims(std::string_view text, std::size_t max_depth, nlohmann::json& out) {
    switch (parse_object(text, max_depth, out)) {
        case ParseResult::ok: return {};
        case ParseResult::too_deep: return jwt_errc::too_deep;
        case ParseResult::not_object: break;
    }
    return jwt_errc::invalid_claims_set;
}

std::error_code check_header(const nlohmann::json& header) {
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string()) return jwt_errc::malformed;
    // No JWS extension is understood, so any `crit` makes the token unusable (RFC 7515 §4.1.11).
    if (header.contains("crit")) return jwt_errc::malformed;
    auto kid = header.find("kid");
    if (kid != header.end() && !kid->is_string()) return jwt_errc::malformed;
    return {};
}

std::error_code decode_frame(std::string_view token, std::size_t max_length, std::size_t max_depth, Segments& seg,
                             nlohmann::json& header, std::string& payload_raw, std::string& signature) {
    if (token.size() > max_length) return jwt_errc::too_long;
    if (!split(token, seg)) return jwt_errc::malformed;
    thread_local std::string header_raw;
    if (!base64url_decode(seg.header, header_raw)) return jwt_errc::malformed;
    switch (parse_object(header_raw, max_depth, header)) {
        case ParseResult::ok: break;
        case ParseResult::too_deep: return jwt_errc::too_deep;
        case ParseResult::not_object: return jwt_errc::malformed;
    }
    if (auto ec = check_header(header)) return ec;
    if (!base64url_decode(seg.payload, payload_raw)) return jwt_errc::malformed;
    if (!base64url_decode(seg.signature, signature)) return jwt_errc::malformed;
    return {};
}

std::optional<TimePoint> numeric_date(const nlohmann::json& claims, const char* name) noexcept {
    auto it = claims.find(name);
    if (it == claims.end() || !it->is_number()) return std::nullopt;
    double v = it->get<double>();
    if (!std::isfinite(v) || std::fabs(v) > 1e11) return std::nullopt;
    return from_unix_ms(static_cast<std::int64_t>(std::llround(v * 1000.0)));
}

bool string_or_string_array(const nlohmann::json& v) {
    if (v.is_string()) return true;
    if (!v.is_array()) return false;
    for (const auto& e : v)
        if (!e.is_string()) return false;
    return true;
}

const SystemClock& system_clock_instance() {
    static const SystemClock c;
    return c;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() * 4 + 2) / 3);
    std::size_t i = 0;
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
        out += b64_alphabet[v & 63];
    }
    std::size_t rest = bytes.size() - i;
    if (rest == 1) {
        unsigned v = b(i) << 16;
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
    } else if (rest == 2) {
        unsigned v = (b(i) << 16) | (b(i + 1) << 8);
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
    }
    return out;
}

bool base64url_decode(std::string_view text, std::string& out) {
    out.clear();
    if (text.size() % 4 == 1) return false;
    out.resize(text.size() / 4 * 3 + 2);
    char* o = out.data();
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : text) {
        const int v = b64_table[static_cast<unsigned char>(ch)];
        if (v < 0) {
            out.clear();
            return false;
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    out.resize(static_cast<std::size_t>(o - out.data()));
    // Canonical form: the unused low bits of the last character must be zero.
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        out.clear();
        return false;
    }
    return true;
}

std::string Token::algorithm() const {
    auto it = header.find("alg");
    return it != header.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::string Token::kid() const {
    auto it = header.find("kid");
    return it != header.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::optional<TimePoint> Token::expires_at() const noexcept { return numeric_date(claims, "exp"); }
std::optional<TimePoint> Token::not_before() const noexcept { return numeric_date(claims, "nbf"); }
std::optional<TimePoint> Token::issued_at() const noexcept { return numeric_date(claims, "iat"); }

std::vector<std::string> Token::audience() const {
    std::vector<std::string> out;
    auto it = claims.find("aud");
    if (it == claims.end() || !string_or_string_array(*it)) return out;
    if (it->is_string()) {
        out.push_back(it->get<std::string>());
    } else {
        for (const auto& e : *it) out.push_back(e.get<std::string>());
    }
    return out;
}

std::error_code decode(std::string_view token, Token& out, std::size_t max_length, std::size_t max_depth) noexcept {
    try {
        Segments seg;
        nlohmann::json header;
        std::string payload_raw, signature;
        if (auto ec = decode_frame(token, max_length, max_depth, seg, header, payload_raw, signature)) return ec;
        nlohmann::json claims;
        if (auto ec = parse_claims(payload_raw, max_depth, claims)) return ec;
        out.header = std::move(header);
        out.claims = std::move(claims);
        return {};
    } catch (...) {
        return jwt_errc::malformed;
    }
}

Verifier::Verifier() = default;

namespace {

// Kids select exactly one key, so two keys may not share one: with a duplicate, which key a
// token is checked with would depend on the order keys were added.
void check_unique_kid(const std::vector<Key>& existing, const Key& key) {
    if (key.kid().empty()) return;
    for (const Key& k : existing)
        if (k.kid() == key.kid())
            throw std::invalid_argument("wsgate::jwt: duplicate key id \"" + key.kid() + "\" in Verifier::allow");
}

}  // namespace

Verifier& Verifier::allow(Key key) {
    check_unique_kid(keys_, key);
    keys_.push_back(std::move(key));
    return *this;
}
Verifier& Verifier::allow(const std::vector<Key>& keys) {
    std::vector<Key> merged = keys_;
    for (const Key& k : keys) {
        check_unique_kid(merged, k);
        merged.push_back(k);
    }
    keys_ = std::move(merged);
    return *this;
}
Verifier& Verifier::with_issuer(std::string issuer) {
    issuers_.push_back(std::move(issuer));
    return *this;
}
Verifier& Verifier::with_audience(std::string audience) {
    audiences_.push_back(std::move(audience));
    return *this;
}
Verifier& Verifier::leeway(std::chrono::seconds s) {
    if (s.count() < 0) throw std::invalid_argument("wsgate::jwt: negative leeway");
    leeway_ = s;
    return *this;
}
Verifier& Verifier::require_claim(std::string name) {
    required_.push_back(std::move(name));
    return *this;
}
Verifier& Verifier::max_length(std::size_t bytes) {
    max_length_ = bytes;
    return *this;
}
Verifier& Verifier::max_depth(std::size_t depth) {
    if (depth == 0) throw std::invalid_argument("wsgate::jwt: max_depth must be at least 1");
    max_depth_ = depth;
    return *this;
}
Verifier& Verifier::kidless_keys_match_any_kid(bool on) {
    kidless_any_kid_ = on;
    return *this;
}
Verifier& Verifier::with_clock(std::shared_ptr<const Clock> clock) {
    clock_ = std::move(clock);
    return *this;
}

std::error_code Verifier::verify(std::string_view token, Token& out) const noexcept {
    try {
        Segments seg;
        nlohmann::json header;
        // Scratch buffers reused per thread: the hot path allocates only the JSON values.
        thread_local std::string payload_raw, signature;
        if (auto ec = decode_frame(token, max_length_, max_depth_, seg, header, payload_raw, signature)) return ec;

        const auto& alg_name = header.find("alg")->get_ref<const std::string&>();
        const std::optional<Algorithm> alg = algorithm_from_string(alg_name);
        if (!alg) return jwt_errc::disallowed_algorithm;  // `none`, `None`, unknown names
        std::string_view kid;
        if (auto k = header.find("kid"); k != header.end()) kid = k->get_ref<const std::string&>();

        // Candidates: a token with a kid gets the one key of that kid, or, only if none has it and
        // the host opted in, the keys without a kid; a kid never reaches a key with another kid.
        // A token without kid cannot select, so every key is a candidate (each still pinned to
        // its algorithm).
        bool kid_known = false, alg_known = false, verified = false;
        auto try_key = [&](const Key& key) {
            kid_known = true;
            if (key.algorithm() != *alg) return;  // the key, not the token, decides the algorithm
            alg_known = true;
            verified = key.material().verify(seg.signing_input, signature);
        };
        if (!kid.empty()) {
            for (const Key& key : keys_) {
                if (key.kid() == kid) {
                    try_key(key);
                    break;
                }
            }
        }
        if (!kid_known && (kid.empty() || kidless_any_kid_)) {
            for (const Key& key : keys_) {
                if (!kid.empty() && !key.kid().empty()) continue;
                try_key(key);
                if (verified) break;
            }
        }
        if (!kid_known) return jwt_errc::unknown_key;
        if (!alg_known) return jwt_errc::disallowed_algorithm;
        if (!verified) return jwt_errc::bad_signature;

        // Only authenticated bytes reach the claims parser.
        nlohmann::json claims;
        if (auto ec = parse_claims(payload_raw, max_depth_, claims)) return ec;

        const Clock& clock = clock_ ? *clock_ : system_clock_instance();
        const double now = static_cast<double>(to_unix_ms(clock.now())) / 1000.0;
        const double lw = static_cast<double>(leeway_.count());
        if (auto it = claims.find("exp"); it != claims.end()) {
            if (!it->is_number()) return jwt_errc::invalid_claim;
            if (now >= it->get<double>() + lw) return jwt_errc::expired;
        }
        if (auto it = claims.find("nbf"); it != claims.end()) {
            if (!it->is_number()) return jwt_errc::invalid_claim;
            if (it->get<double>() > now + lw) return jwt_errc::not_yet_valid;
        }
        if (auto it = claims.find("iat"); it != claims.end()) {
            if (!it->is_number()) return jwt_errc::invalid_claim;
            if (it->get<double>() > now + lw) return jwt_errc::not_yet_valid;
        }
        if (auto it = claims.find("iss"); it != claims.end()) {
            if (!it->is_string()) return jwt_errc::invalid_claim;
            if (!issuers_.empty()) {
                const auto& iss = it->get_ref<const std::string&>();
                bool ok = false;
                for (const auto& i : issuers_) ok = ok || i == iss;
                if (!ok) return jwt_errc::wrong_issuer;
            }
        } else if (!issuers_.empty()) {
            return jwt_errc::missing_claim;
        }
        if (auto it = claims.find("aud"); it != claims.end()) {
            if (!string_or_string_array(*it)) return jwt_errc::invalid_claim;
            bool ok = false;
            for (const auto& a : audiences_) {
                if (it->is_string()) {
                    ok = ok || it->get_ref<const std::string&>() == a;
                } else {
                    for (const auto& e : *it) ok = ok || e.get_ref<const std::string&>() == a;
                }
            }
            if (!ok) return jwt_errc::wrong_audience;
        } else if (!audiences_.empty()) {
            return jwt_errc::missing_claim;
        }
        if (auto it = claims.find("sub"); it != claims.end() && !it->is_string()) return jwt_errc::invalid_claim;
        for (const auto& r : required_)
            if (!claims.contains(r)) return jwt_errc::missing_claim;

        out.header = std::move(header);
        out.claims = std::move(claims);
        return {};
    } catch (...) {
        return jwt_errc::malformed;
    }
}

std::string sign_compact(std::string_view header_json, std::string_view payload, const SigningKey& key) {
    std::string out = base64url_encode(header_json);
    out += '.';
    out += base64url_encode(payload);
    std::string sig = key.material().sign(out);
    out += '.';
    out += base64url_encode(sig);
    return out;
}

std::string sign(const nlohmann::json& claims, const SigningKey& key, const nlohmann::json& extra_header) {
    if (!claims.is_object()) throw std::invalid_argument("wsgate::jwt::sign: claims must be a JSON object");
    if (!extra_header.is_object()) throw std::invalid_argument("wsgate::jwt::sign: header must be a JSON object");
    nlohmann::json header = nlohmann::json::object();
    header["alg"] = std::string(to_string(key.algorithm()));
    header["typ"] = "JWT";
    if (!key.kid().empty()) header["kid"] = key.kid();
    for (auto it = extra_header.begin(); it != extra_header.end(); ++it) {
        if (it.key() == "alg") throw std::invalid_argument("wsgate::jwt::sign: alg comes from the key");
        header[it.key()] = it.value();
    }
    return sign_compact(header.dump(), claims.dump(), key);
}

}  // namespace jwt
}  // namespace wsgate
