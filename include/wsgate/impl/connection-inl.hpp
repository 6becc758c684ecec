#pragma once
// Definitions for connection.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/connection.hpp>
#include <wsgate/detail/config.hpp>

#include <wsgate/random.hpp>

namespace wsgate {

WSGATE_INLINE ConnectionId make_connection_id() { return random_token(16); }

WSGATE_INLINE std::string_view to_string(PrincipalKind k) noexcept {
    switch (k) {
        case PrincipalKind::user: return "user";
        case PrincipalKind::public_device: return "public";
        case PrincipalKind::anonymous: break;
    }
    return "anonymous";
}

WSGATE_INLINE PrincipalKind principal_kind_from_string(std::string_view s) noexcept {
    if (s == "user") return PrincipalKind::user;
    if (s == "public") return PrincipalKind::public_device;
    return PrincipalKind::anonymous;
}

// ---- JSON forms -------------------------------------------------------------------------

WSGATE_INLINE void to_json(nlohmann::json& j, const Principal& p) {
    j = nlohmann::json{{"kind", to_string(p.kind)},       {"userId", p.user_id},
                       {"sessionId", p.session_id},       {"deviceId", p.device_id},
                       {"nickname", p.nickname},          {"permissions", p.permissions},
                       {"claims", p.claims}};
    if (p.issued_at) j["issuedAt"] = to_unix_seconds(*p.issued_at);
    if (p.expires_at) j["expiresAt"] = to_unix_seconds(*p.expires_at);
}

WSGATE_INLINE void from_json(const nlohmann::json& j, Principal& p) {
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

WSGATE_INLINE void to_json(nlohmann::json& j, const ConnectionRecord& r) {
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

WSGATE_INLINE void from_json(const nlohmann::json& j, ConnectionRecord& r) {
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

}  // namespace wsgate
