// AWS Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
#include <wsgate/aws/sigv4.hpp>
#include <wsgate/detail/text.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <vector>

namespace wsgate::aws {
namespace {

std::string to_hex(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(n * 2, '0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    return out;
}

std::string hmac(std::string_view key, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
         data.size(), out.data(), &len);
    return std::string(reinterpret_cast<const char*>(out.data()), len);
}

// Trims and collapses runs of spaces (the spec's Trimall).
std::string trimall(std::string_view v) {
    std::string out;
    bool space = false;
    for (char c : v) {
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (space && !out.empty()) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string pct_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            const int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

// RFC 3986 dot-segment removal and empty-segment collapsing, as the suite's normalize-path cases.
std::vector<std::string> normalized_segments(std::string_view path) {
    std::vector<std::string> segs;
    std::size_t i = 0;
    while (i <= path.size()) {
        const auto slash = path.find('/', i);
        const auto seg = path.substr(i, slash == std::string_view::npos ? std::string_view::npos : slash - i);
        if (seg == "..") {
            if (!segs.empty()) segs.pop_back();
        } else if (!seg.empty() && seg != ".") {
            segs.emplace_back(seg);
        }
        if (slash == std::string_view::npos) break;
        i = slash + 1;
    }
    return segs;
}

std::string canonical_uri(std::string_view path) {
    if (path.empty()) return "/";
    const auto segs = normalized_segments(path);
    std::string out;
    for (const auto& s : segs) {
        out += '/';
        out += uri_encode(s, true);  // the wire path is encoded once more (all services but S3)
    }
    const bool trailing = path.size() > 1 && path.back() == '/' && !segs.empty();
    if (out.empty() || trailing) out += '/';
    return out;
}

std::string canonical_query(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> params;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        auto key = uri_encode(pct_decode(part.substr(0, eq)), true);
        auto value = eq == std::string_view::npos ? std::string{} : uri_encode(pct_decode(part.substr(eq + 1)), true);
        params.emplace_back(std::move(key), std::move(value));
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [k, v] : params) {
        if (!out.empty()) out += '&';
        out += k;
        out += '=';
        out += v;
    }
    return out;
}

}  // namespace

std::optional<Credentials> Credentials::from_environment() {
    const char* id = std::getenv("AWS_ACCESS_KEY_ID");
    const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
    if (!id || !secret || !*id || !*secret) return std::nullopt;
    Credentials c{id, secret, {}};
    if (const char* token = std::getenv("AWS_SESSION_TOKEN")) c.session_token = token;
    return c;
}

std::string format_amz_date(TimePoint t) {
    const auto secs = static_cast<std::time_t>(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::array<char, 32> buf{};
    std::strftime(buf.data(), buf.size(), "%Y%m%dT%H%M%SZ", &tm);
    return buf.data();
}

std::string sha256_hex(std::string_view data) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d.data());
    return to_hex(d.data(), d.size());
}

std::string uri_encode(std::string_view s, bool encode_slash) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encode_slash)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    return out;
}

Signature canonical_request(const HttpRequest& request) {
    // Header names lower-cased and sorted; repeated headers joined by commas in request order.
    std::map<std::string, std::string> headers;
    for (const auto& [name, value] : request.headers) {
        auto key = wsgate::detail::to_lower(name);
        auto v = trimall(value);
        auto [it, inserted] = headers.try_emplace(std::move(key), v);
        if (!inserted) it->second += "," + v;
    }
    Signature s;
    std::string canon_headers;
    for (const auto& [name, value] : headers) {
        canon_headers += name + ':' + value + '\n';
        if (!s.signed_headers.empty()) s.signed_headers += ';';
        s.signed_headers += name;
    }
    s.canonical_request = request.method + '\n' + canonical_uri(request.path) + '\n' + canonical_query(request.query) +
                          '\n' + canon_headers + '\n' + s.signed_headers + '\n' + sha256_hex(request.body);
    return s;
}

Signature sign_request(HttpRequest& request, const Credentials& credentials, const SigningScope& scope, TimePoint now) {
    if (!request.header("host") && !request.host.empty()) request.headers.emplace_back("Host", request.host);
    std::string amz_date;
    if (const auto* d = request.header("x-amz-date")) amz_date = *d;
    else {
        amz_date = format_amz_date(now);
        request.headers.emplace_back("X-Amz-Date", amz_date);
    }
    if (!credentials.session_token.empty() && !request.header("x-amz-security-token"))
        request.headers.emplace_back("X-Amz-Security-Token", credentials.session_token);
    // Never sign a stale Authorization header.
    std::erase_if(request.headers, [](const auto& h) { return wsgate::detail::to_lower(h.first) == "authorization"; });

    Signature s = canonical_request(request);
    const std::string date = amz_date.substr(0, 8);
    const std::string credential_scope = date + '/' + scope.region + '/' + scope.service + "/aws4_request";
    s.string_to_sign = "AWS4-HMAC-SHA256\n" + amz_date + '\n' + credential_scope + '\n' + sha256_hex(s.canonical_request);
    const auto k_date = hmac("AWS4" + credentials.secret_access_key, date);
    const auto k_region = hmac(k_date, scope.region);
    const auto k_service = hmac(k_region, scope.service);
    const auto k_signing = hmac(k_service, "aws4_request");
    const auto raw = hmac(k_signing, s.string_to_sign);
    s.signature = to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
    s.authorization = "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + '/' + credential_scope +
                      ", SignedHeaders=" + s.signed_headers + ", Signature=" + s.signature;
    request.headers.emplace_back("Authorization", s.authorization);
    return s;
}

// ---- HttpRequest helpers -----------------------------------------------------------------

std::string HttpRequest::url() const {
    std::string u = scheme + "://" + host + (path.empty() ? "/" : path);
    if (!query.empty()) u += '?' + query;
    return u;
}

namespace {
template <class Headers>
const std::string* find_header(const Headers& headers, std::string_view name) noexcept {
    for (const auto& h : headers) {
        if (wsgate::detail::iequals(h.first, name)) return &h.second;
    }
    return nullptr;
}
}  // namespace

const std::string* HttpRequest::header(std::string_view name) const noexcept { return find_header(headers, name); }

const std::string* HttpResponse::header(std::string_view name) const noexcept { return find_header(headers, name); }

void HttpRequest::set_header(std::string_view name, std::string value) {
    const auto lname = wsgate::detail::to_lower(name);
    std::erase_if(headers, [&](const auto& h) { return wsgate::detail::to_lower(h.first) == lname; });
    headers.emplace_back(std::string{name}, std::move(value));
}

void HttpClient::perform_many(std::span<const HttpRequest> requests, std::span<HttpResponse> out) {
    for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i) {
        try {
            out[i] = perform(requests[i]);
        } catch (const std::exception& e) {
            out[i] = failed_response(e.what());
        }
    }
}

}  // namespace wsgate::aws
