// Small shared pieces: time formatting, random ids, error categories, JSON forms, query parsing.
#include <wsgate/audience.hpp>
#include <wsgate/authorizer.hpp>
#include <wsgate/bus.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>
#include <wsgate/error.hpp>
#include <wsgate/random.hpp>
#include <wsgate/transport.hpp>

#if defined(__linux__)
#include <sys/random.h>
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <stdlib.h>
#else
#include <random>
#endif
#include <cerrno>

#include <array>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace wsgate {

std::string format_iso8601(TimePoint t) {
    const auto ms_total = to_unix_ms(t);
    auto secs = static_cast<std::time_t>(ms_total / 1000);
    auto ms = static_cast<int>(ms_total % 1000);
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::array<char, 96> buf{};
    std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf.data();
}

namespace detail {
// The operating system's CSPRNG: getrandom(2) on Linux, arc4random_buf(3) on the BSDs and macOS.
void fill_random(char* out, std::size_t n) {
#if defined(__linux__)
    while (n > 0) {
        const ssize_t got = ::getrandom(out, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("wsgate: getrandom failed");
        }
        out += got;
        n -= static_cast<std::size_t>(got);
    }
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
    ::arc4random_buf(out, n);
#else
    std::random_device device;
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>(device() & 0xff);
#endif
}
}  // namespace detail

std::string random_token(std::size_t bytes) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string raw(bytes, '\0');
    detail::fill_random(raw.data(), bytes);
    std::string out;
    out.reserve((bytes * 4 + 2) / 3);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(raw[k]); };
    for (; i + 3 <= bytes; i += 3) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (bytes - i == 1) {
        const unsigned v = byte(i) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
    } else if (bytes - i == 2) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
    }
    return out;
}

ConnectionId make_connection_id() { return random_token(16); }

std::string_view to_string(PrincipalKind k) noexcept {
    switch (k) {
        case PrincipalKind::user: return "user";
        case PrincipalKind::public_device: return "public";
        case PrincipalKind::anonymous: break;
    }
    return "anonymous";
}

PrincipalKind principal_kind_from_string(std::string_view s) noexcept {
    if (s == "user") return PrincipalKind::user;
    if (s == "public") return PrincipalKind::public_device;
    return PrincipalKind::anonymous;
}

std::string_view to_string(SendStatus s) noexcept {
    switch (s) {
        case SendStatus::ok: return "ok";
        case SendStatus::gone: return "gone";
        case SendStatus::backpressure: return "backpressure";
        case SendStatus::error: break;
    }
    return "error";
}

void Transport::send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) {
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) {
        try {
            out[i] = send(ids[i], payload);
        } catch (...) {
            out[i] = SendStatus::error;
        }
    }
}

namespace {

template <class Enum, class Describe>
class Category final : public std::error_category {
public:
    Category(const char* name, Describe d) : name_(name), describe_(d) {}
    const char* name() const noexcept override { return name_; }
    std::string message(int ev) const override { return describe_(static_cast<Enum>(ev)); }

private:
    const char* name_;
    Describe describe_;
};

std::string describe_protocol(protocol_errc e) {
    switch (e) {
        case protocol_errc::malformed_json: return "message is not valid JSON";
        case protocol_errc::not_an_object: return "message must be a JSON object";
        case protocol_errc::missing_route: return "message route key is missing or not a string";
        case protocol_errc::unknown_route: return "unknown message type";
        case protocol_errc::invalid_message: return "message fields are missing or invalid";
        case protocol_errc::too_large: return "message too large";
        case protocol_errc::rate_limited: return "rate limit exceeded";
        case protocol_errc::forbidden: return "forbidden";
        case protocol_errc::unknown_connection: return "unknown connection";
        case protocol_errc::invalid_utf8: return "message is not valid UTF-8";
        case protocol_errc::handler_failed: return "internal error";
        case protocol_errc::store_unavailable: return "service unavailable";
    }
    return "unknown protocol error";
}

std::string describe_store(store_errc e) {
    switch (e) {
        case store_errc::not_found: return "connection not found";
        case store_errc::unavailable: return "store unavailable";
        case store_errc::corrupt: return "store data is corrupt";
        case store_errc::read_only: return "store is read-only";
        case store_errc::busy: return "store is locked";
        case store_errc::invalid_argument: return "invalid argument";
        case store_errc::io_error: return "store I/O error";
    }
    return "unknown store error";
}

std::string describe_transport(transport_errc e) {
    switch (e) {
        case transport_errc::gone: return "connection gone";
        case transport_errc::backpressure: return "send queue full";
        case transport_errc::closed: return "connection closing";
        case transport_errc::forbidden: return "transport forbidden";
        case transport_errc::too_large: return "payload too large for transport";
        case transport_errc::throttled: return "throttled";
        case transport_errc::failed: return "send failed";
    }
    return "unknown transport error";
}

}  // namespace

const std::error_category& protocol_category() noexcept {
    static const Category<protocol_errc, decltype(&describe_protocol)> c{"wsgate.protocol", &describe_protocol};
    return c;
}
const std::error_category& store_category() noexcept {
    static const Category<store_errc, decltype(&describe_store)> c{"wsgate.store", &describe_store};
    return c;
}
const std::error_category& transport_category() noexcept {
    static const Category<transport_errc, decltype(&describe_transport)> c{"wsgate.transport", &describe_transport};
    return c;
}

int status_of(protocol_errc e) noexcept {
    switch (e) {
        case protocol_errc::too_large: return 413;
        case protocol_errc::rate_limited: return 429;
        case protocol_errc::forbidden: return 403;
        case protocol_errc::unknown_connection: return 410;
        case protocol_errc::handler_failed: return 500;
        case protocol_errc::store_unavailable: return 503;
        default: return 400;
    }
}

// ---- JSON forms -------------------------------------------------------------------------

void to_json(nlohmann::json& j, const Principal& p) {
    j = nlohmann::json{{"kind", to_string(p.kind)},       {"userId", p.user_id},
                       {"sessionId", p.session_id},       {"deviceId", p.device_id},
                       {"nickname", p.nickname},          {"permissions", p.permissions},
                       {"claims", p.claims}};
    if (p.issued_at) j["issuedAt"] = to_unix_seconds(*p.issued_at);
    if (p.expires_at) j["expiresAt"] = to_unix_seconds(*p.expires_at);
}

void from_json(const nlohmann::json& j, Principal& p) {
    p = Principal{};
    p.kind = principal_kind_from_string(j.value("kind", std::string{"anonymous"}));
    p.user_id = j.value("userId", std::string{});
    p.session_id = j.value("sessionId", std::string{});
    p.device_id = j.value("deviceId", std::string{});
    p.nickname = j.value("nickname", std::string{});
    if (auto it = j.find("permissions"); it != j.end() && it->is_array())
        for (const auto& v : *it)
            if (v.is_string()) p.permissions.push_back(v.get<std::string>());
    if (auto it = j.find("issuedAt"); it != j.end() && it->is_number_integer())
        p.issued_at = from_unix_seconds(it->get<std::int64_t>());
    if (auto it = j.find("expiresAt"); it != j.end() && it->is_number_integer())
        p.expires_at = from_unix_seconds(it->get<std::int64_t>());
    if (auto it = j.find("claims"); it != j.end() && it->is_object()) p.claims = *it;
}

void to_json(nlohmann::json& j, const ConnectionRecord& r) {
    j = nlohmann::json{{"id", r.id},
                       {"principal", r.principal},
                       {"connectedAt", to_unix_ms(r.connected_at)},
                       {"expiresAt", to_unix_ms(r.expires_at)},
                       {"lastSeen", to_unix_ms(r.last_seen)},
                       {"sourceIp", r.source_ip},
                       {"userAgent", r.user_agent},
                       {"nodeId", r.node_id},
                       {"topics", r.topics},
                       {"attributes", r.attributes}};
}

void from_json(const nlohmann::json& j, ConnectionRecord& r) {
    r = ConnectionRecord{};
    r.id = j.at("id").get<std::string>();
    if (auto it = j.find("principal"); it != j.end()) r.principal = it->get<Principal>();
    r.connected_at = from_unix_ms(j.value("connectedAt", std::int64_t{0}));
    r.expires_at = from_unix_ms(j.value("expiresAt", std::int64_t{0}));
    r.last_seen = from_unix_ms(j.value("lastSeen", std::int64_t{0}));
    r.source_ip = j.value("sourceIp", std::string{});
    r.user_agent = j.value("userAgent", std::string{});
    r.node_id = j.value("nodeId", std::string{});
    if (auto it = j.find("topics"); it != j.end() && it->is_array()) r.topics = it->get<std::vector<std::string>>();
    if (auto it = j.find("attributes"); it != j.end() && it->is_object())
        r.attributes = it->get<std::map<std::string, std::string>>();
}

namespace {
std::string_view kind_name(Audience::Kind k) {
    switch (k) {
        case Audience::Kind::topic: return "topic";
        case Audience::Kind::user: return "user";
        case Audience::Kind::users: return "users";
        case Audience::Kind::connections: return "connections";
        case Audience::Kind::everyone: break;
    }
    return "everyone";
}
}  // namespace

void to_json(nlohmann::json& j, const Audience& a) {
    j = nlohmann::json{{"kind", kind_name(a.kind)}};
    if (!a.topic_name.empty()) j["topic"] = a.topic_name;
    if (!a.user_ids.empty()) j["users"] = a.user_ids;
    if (!a.connection_ids.empty()) j["connections"] = a.connection_ids;
    if (!a.excluded_device.empty()) j["exceptDevice"] = a.excluded_device;
    if (!a.excluded_device_user.empty()) j["exceptDeviceUser"] = a.excluded_device_user;
    if (!a.excluded_connection.empty()) j["exceptConnection"] = a.excluded_connection;
    if (!a.required_permission.empty()) j["permission"] = a.required_permission;
}

void from_json(const nlohmann::json& j, Audience& a) {
    a = Audience{};
    const auto kind = j.at("kind").get<std::string>();
    if (kind == "topic") a.kind = Audience::Kind::topic;
    else if (kind == "user") a.kind = Audience::Kind::user;
    else if (kind == "users") a.kind = Audience::Kind::users;
    else if (kind == "connections") a.kind = Audience::Kind::connections;
    else if (kind == "everyone") a.kind = Audience::Kind::everyone;
    else throw std::invalid_argument("unknown audience kind");
    a.topic_name = j.value("topic", std::string{});
    if (auto it = j.find("users"); it != j.end()) a.user_ids = it->get<std::vector<std::string>>();
    if (auto it = j.find("connections"); it != j.end()) a.connection_ids = it->get<std::vector<std::string>>();
    a.excluded_device = j.value("exceptDevice", std::string{});
    a.excluded_device_user = j.value("exceptDeviceUser", std::string{});
    a.excluded_connection = j.value("exceptConnection", std::string{});
    a.required_permission = j.value("permission", std::string{});
}

std::string encode_bus_message(const BusMessage& m) {
    return nlohmann::json{{"origin", m.origin_node}, {"audience", m.audience}, {"payload", m.payload}}.dump();
}

bool decode_bus_message(std::string_view text, BusMessage& out) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return false;
    try {
        BusMessage m;
        m.origin_node = j.at("origin").get<std::string>();
        m.audience = j.at("audience").get<Audience>();
        m.payload = j.at("payload").get<std::string>();
        out = std::move(m);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

// ---- query strings ----------------------------------------------------------------------

std::string percent_decode(std::string_view s, bool plus_is_space) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%' && i + 2 < s.size()) {
            const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += (plus_is_space && c == '+') ? ' ' : c;
    }
    return out;
}

std::map<std::string, std::string> parse_query_string(std::string_view qs) {
    std::map<std::string, std::string> out;
    if (!qs.empty() && qs.front() == '?') qs.remove_prefix(1);
    while (!qs.empty()) {
        const auto amp = qs.find('&');
        auto part = qs.substr(0, amp);
        qs = amp == std::string_view::npos ? std::string_view{} : qs.substr(amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        auto key = percent_decode(part.substr(0, eq));
        auto value = eq == std::string_view::npos ? std::string{} : percent_decode(part.substr(eq + 1));
        out[std::move(key)] = std::move(value);
    }
    return out;
}

}  // namespace wsgate
