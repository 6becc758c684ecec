// API Gateway WebSocket events: parsing, the authorizer context ↔ Principal mapping, the handler.
#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/detail/text.hpp>
#include "json_fields.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <limits>

namespace wsgate::aws {

using nlohmann::json;
using detail::FieldError;

std::string_view to_string(EventType t) noexcept {
    switch (t) {
        case EventType::connect: return "CONNECT";
        case EventType::disconnect: return "DISCONNECT";
        case EventType::message: break;
    }
    return "MESSAGE";
}

std::string RequestContext::callback_url() const {
    return "https://" + domain_name + (stage.empty() ? std::string{} : "/" + stage);
}

ConnectRequest detail::connect_request(const RequestContext& context, const std::map<std::string, std::string>& query,
                                       const std::map<std::string, std::vector<std::string>>& multi_value_query,
                                       const std::map<std::string, std::string>& headers) {
    ConnectRequest r;
    r.path = "/" + context.stage;
    r.query = query;
    // A value repeated in the query appears in the multi-value map only; keep the last, like parse_query_string.
    for (const auto& [k, vs] : multi_value_query)
        if (!vs.empty() && !r.query.contains(k)) r.query[k] = vs.back();
    r.headers = headers;
    r.source_ip = context.source_ip;
    r.user_agent = context.user_agent;
    if (r.user_agent.empty())
        if (auto it = headers.find("user-agent"); it != headers.end()) r.user_agent = it->second;
    r.connection_id = context.connection_id;
    return r;
}

ConnectRequest WebSocketEvent::to_connect_request() const {
    return detail::connect_request(context, query, multi_value_query, headers);
}

// ---- base64 ------------------------------------------------------------------------------

std::optional<std::string> base64_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() * 3 / 4);
    unsigned buf = 0;
    int bits = 0;
    for (char c : in) {
        const int v = val(c);
        if (v < 0) return std::nullopt;
        buf = (buf << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xff);
        }
    }
    return out;
}

std::string base64_encode(std::string_view in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(in[k]); };
    for (; i + 3 <= in.size(); i += 3) {
        const unsigned v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (in.size() - i == 1) {
        const unsigned v = b(i) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += "==";
    } else if (in.size() - i == 2) {
        const unsigned v = (b(i) << 16) | (b(i + 1) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

// ---- parsing -----------------------------------------------------------------------------

namespace detail {

const json* field(const json& obj, const char* name) {
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

std::string scalar_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
    if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
    if (v.is_number_float()) return v.dump();
    throw FieldError{event_errc::bad_field_type, "not a scalar"};
}

std::string opt_string(const json& obj, const char* name) {
    const json* v = field(obj, name);
    if (!v) return {};
    if (!v->is_string()) throw FieldError{event_errc::bad_field_type, name};
    return v->get<std::string>();
}

std::string req_string(const json& obj, const char* name) {
    const json* v = field(obj, name);
    if (!v) throw FieldError{event_errc::missing_field, name};
    if (!v->is_string()) throw FieldError{event_errc::bad_field_type, name};
    return v->get<std::string>();
}

std::int64_t to_int(const json& v, const char* name) {
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            throw FieldError{event_errc::bad_field_type, name};
        return static_cast<std::int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<std::int64_t>();
    if (v.is_number_float()) {
        // Converting a double outside the int64 range (or NaN) is undefined: refused instead.
        const double d = v.get<double>();
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            throw FieldError{event_errc::bad_field_type, name};
        return static_cast<std::int64_t>(d);
    }
    throw FieldError{event_errc::bad_field_type, name};
}

std::int64_t opt_int(const json& obj, const char* name) {
    const json* v = field(obj, name);
    return v ? to_int(*v, name) : 0;
}

std::map<std::string, std::string> string_map(const json& obj, const char* name, bool lower_keys) {
    std::map<std::string, std::string> out;
    const json* v = field(obj, name);
    if (!v) return out;
    if (!v->is_object()) throw FieldError{event_errc::bad_field_type, name};
    for (const auto& [k, val] : v->items()) {
        if (val.is_null()) continue;
        if (!val.is_string()) throw FieldError{event_errc::bad_field_type, std::string{name} + "." + k};
        out[lower_keys ? wsgate::detail::to_lower(k) : k] = val.get<std::string>();
    }
    return out;
}

std::map<std::string, std::vector<std::string>> multi_map(const json& obj, const char* name, bool lower_keys) {
    std::map<std::string, std::vector<std::string>> out;
    const json* v = field(obj, name);
    if (!v) return out;
    if (!v->is_object()) throw FieldError{event_errc::bad_field_type, name};
    for (const auto& [k, arr] : v->items()) {
        if (!arr.is_array()) throw FieldError{event_errc::bad_field_type, std::string{name} + "." + k};
        auto& dst = out[lower_keys ? wsgate::detail::to_lower(k) : k];
        for (const auto& s : arr) {
            if (!s.is_string()) throw FieldError{event_errc::bad_field_type, std::string{name} + "." + k};
            dst.push_back(s.get<std::string>());
        }
    }
    return out;
}

RequestContext parse_context(const json& rc, bool require_connection) {
    if (!rc.is_object()) throw FieldError{event_errc::not_an_object, "requestContext"};
    RequestContext c;
    c.route_key = opt_string(rc, "routeKey");
    const auto type = opt_string(rc, "eventType");
    if (type == "CONNECT") c.event_type = EventType::connect;
    else if (type == "MESSAGE") c.event_type = EventType::message;
    else if (type == "DISCONNECT") c.event_type = EventType::disconnect;
    else if (type.empty() && c.route_key == "$connect") c.event_type = EventType::connect;
    else if (type.empty() && c.route_key == "$disconnect") c.event_type = EventType::disconnect;
    else if (type.empty() && !c.route_key.empty()) c.event_type = EventType::message;
    else if (require_connection) throw FieldError{event_errc::unknown_event_type, type.empty() ? "eventType" : type};
    c.connection_id = require_connection ? req_string(rc, "connectionId") : opt_string(rc, "connectionId");
    if (require_connection && c.connection_id.empty()) throw FieldError{event_errc::missing_field, "connectionId"};
    c.domain_name = opt_string(rc, "domainName");
    c.stage = opt_string(rc, "stage");
    c.api_id = opt_string(rc, "apiId");
    c.request_id = opt_string(rc, "requestId");
    c.message_id = opt_string(rc, "messageId");
    c.message_direction = opt_string(rc, "messageDirection");
    c.connected_at = opt_int(rc, "connectedAt");
    c.request_time_epoch = opt_int(rc, "requestTimeEpoch");
    if (const json* id = field(rc, "identity")) {
        if (!id->is_object()) throw FieldError{event_errc::bad_field_type, "identity"};
        c.source_ip = opt_string(*id, "sourceIp");
        c.user_agent = opt_string(*id, "userAgent");
    }
    if (const json* a = field(rc, "authorizer")) {
        if (!a->is_object()) throw FieldError{event_errc::bad_field_type, "authorizer"};
        for (const auto& [k, v] : a->items()) {
            if (v.is_null()) continue;
            if (v.is_object() || v.is_array()) c.authorizer[k] = v.dump();
            else c.authorizer[k] = scalar_text(v);
        }
    }
    if (const json* code = field(rc, "disconnectStatusCode")) {
        // A close code is 0..4999 (RFC 6455 §7.4); anything outside int would not convert.
        if (!code->is_number_integer()) throw FieldError{event_errc::bad_field_type, "disconnectStatusCode"};
        const std::int64_t n = to_int(*code, "disconnectStatusCode");
        if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max())
            throw FieldError{event_errc::bad_field_type, "disconnectStatusCode"};
        c.disconnect_status_code = static_cast<int>(n);
    }
    c.disconnect_reason = opt_string(rc, "disconnectReason");
    return c;
}

}  // namespace detail

Parsed<WebSocketEvent> websocket_event_from_json(const json& ev) noexcept {
    Parsed<WebSocketEvent> out;
    try {
        if (!ev.is_object()) {
            out.error = event_errc::not_an_object;
            out.detail = "event";
            return out;
        }
        const json* rc = detail::field(ev, "requestContext");
        if (!rc) throw FieldError{event_errc::missing_field, "requestContext"};
        WebSocketEvent e;
        e.context = detail::parse_context(*rc, true);
        e.headers = detail::string_map(ev, "headers", true);
        e.multi_value_headers = detail::multi_map(ev, "multiValueHeaders", true);
        e.query = detail::string_map(ev, "queryStringParameters", false);
        e.multi_value_query = detail::multi_map(ev, "multiValueQueryStringParameters", false);
        if (const json* b = detail::field(ev, "isBase64Encoded")) {
            if (!b->is_boolean()) throw FieldError{event_errc::bad_field_type, "isBase64Encoded"};
            e.is_base64_encoded = b->get<bool>();
        }
        e.body = detail::opt_string(ev, "body");
        if (e.is_base64_encoded) {
            auto decoded = base64_decode(e.body);
            if (!decoded) throw FieldError{event_errc::bad_base64, "body"};
            e.body = std::move(*decoded);
        }
        out.value = std::move(e);
    } catch (const FieldError& fe) {
        out.error = fe.code;
        out.detail = fe.field;
    } catch (const std::exception& ex) {
        out.error = event_errc::bad_field_type;
        out.detail = ex.what();
    }
    return out;
}

Parsed<WebSocketEvent> parse_websocket_event(std::string_view text) noexcept {
    try {
        auto j = json::parse(text, nullptr, false);
        if (j.is_discarded()) {
            Parsed<WebSocketEvent> out;
            out.error = event_errc::not_json;
            out.detail = "event";
            return out;
        }
        return websocket_event_from_json(j);
    } catch (...) {
        Parsed<WebSocketEvent> out;
        out.error = event_errc::not_json;
        return out;
    }
}

// ---- authorizer context ↔ Principal ------------------------------------------------------

namespace {
// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (what seed 001's authorizer writes as `createdAt`).
std::optional<TimePoint> parse_iso8601_utc(const std::string& s) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6) return std::nullopt;
    std::size_t i = static_cast<std::size_t>(used);
    int ms = 0, digits = 0;
    if (i < s.size() && s[i] == '.') {
        for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i)
            if (digits++ < 3) ms = ms * 10 + (s[i] - '0');
        if (digits == 0) return std::nullopt;
        for (; digits < 3; ++digits) ms *= 10;
    }
    if (i + 1 != s.size() || s[i] != 'Z') return std::nullopt;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    const auto secs = timegm(&tm);
    return from_unix_ms(static_cast<std::int64_t>(secs) * 1000 + ms);
}
}  // namespace

std::map<std::string, std::string> to_authorizer_context(const Principal& p) {
    std::map<std::string, std::string> c;
    c["kind"] = std::string{to_string(p.kind)};
    c["connectionType"] = c["kind"];
    c["userId"] = p.user_id;
    c["sessionId"] = p.session_id;
    c["deviceId"] = p.device_id;
    c["nickname"] = p.nickname;
    std::string perms;
    for (const auto& s : p.permissions) {
        if (!perms.empty()) perms += ',';
        perms += s;
    }
    c["permissions"] = perms;
    if (p.issued_at) c["issuedAt"] = std::to_string(to_unix_seconds(*p.issued_at));
    if (p.expires_at) c["expiresAt"] = std::to_string(to_unix_seconds(*p.expires_at));
    if (p.claims.is_object() && !p.claims.empty()) c["claims"] = p.claims.dump();
    return c;
}

Principal principal_from_authorizer_context(const std::map<std::string, std::string>& ctx) {
    Principal p;
    auto get = [&](const char* k) -> const std::string* {
        auto it = ctx.find(k);
        return it == ctx.end() ? nullptr : &it->second;
    };
    if (const auto* k = get("kind")) p.kind = principal_kind_from_string(*k);
    else if (const auto* t = get("connectionType")) p.kind = principal_kind_from_string(*t);
    if (const auto* v = get("userId")) p.user_id = *v;
    if (const auto* v = get("sessionId")) p.session_id = *v;
    if (const auto* v = get("deviceId")) p.device_id = *v;
    if (const auto* v = get("nickname")) p.nickname = *v;
    // A public principal's `userId` is its device id in seed 001's maps; wsgate keeps user_id empty.
    if (p.kind == PrincipalKind::public_device && p.user_id == p.device_id) p.user_id.clear();
    if (const auto* v = get("permissions")) {
        std::string_view s = *v;
        if (!s.empty() && s.front() == '[') {
            auto arr = json::parse(s, nullptr, false);
            if (arr.is_array())
                for (const auto& e : arr)
                    if (e.is_string()) p.permissions.push_back(e.get<std::string>());
        } else {
            while (!s.empty()) {
                const auto comma = s.find(',');
                auto part = s.substr(0, comma);
                while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
                while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
                if (!part.empty()) p.permissions.emplace_back(part);
                s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
            }
        }
    }
    if (const auto* v = get("issuedAt")) {
        char* end = nullptr;
        const long long secs = std::strtoll(v->c_str(), &end, 10);
        if (end && *end == '\0' && !v->empty()) p.issued_at = from_unix_seconds(secs);
    }
    if (const auto* v = get("expiresAt")) {
        char* end = nullptr;
        const long long secs = std::strtoll(v->c_str(), &end, 10);
        if (end && *end == '\0' && !v->empty()) p.expires_at = from_unix_seconds(secs);
    }
    bool created_at_used = false;
    if (!p.issued_at)
        if (const auto* v = get("createdAt"))
            if (auto t = parse_iso8601_utc(*v)) {
                p.issued_at = *t;
                created_at_used = true;
            }
    if (const auto* v = get("claims")) {
        auto c = json::parse(*v, nullptr, false);
        if (c.is_object()) p.claims = std::move(c);
    }
    static constexpr std::array<std::string_view, 13> known{"kind", "connectionType", "userId", "sessionId",
                                                            "deviceId", "nickname", "permissions", "issuedAt",
                                                            "expiresAt", "claims", "principalId",
                                                            "integrationLatency", ""};
    for (const auto& [k, v] : ctx) {
        if (k == "createdAt" && created_at_used) continue;
        if (std::find(known.begin(), known.end(), k) == known.end() && !p.claims.contains(k)) p.claims[k] = v;
    }
    return p;
}

}  // namespace wsgate::aws
