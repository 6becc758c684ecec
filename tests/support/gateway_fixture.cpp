#include "gateway_fixture.hpp"

namespace wsgate::test {

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == sep) {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    out.push_back(cur);
    return out;
}
}  // namespace

AuthDecision ScriptedAuthorizer::authorize(const ConnectRequest& r) {
    const auto* as = r.query_param("as");
    if (as == nullptr || *as == "deny") return AuthDecision::deny(401, "missing_token");
    if (*as == "throw") throw std::runtime_error("authorizer exploded");
    Principal p;
    auto parts = split(*as, ':');
    if (parts[0] == "user" && parts.size() >= 2) {
        p.kind = PrincipalKind::user;
        p.user_id = parts[1];
        if (parts.size() >= 3) p.device_id = parts[2];
        if (parts.size() >= 4)
            for (auto& perm : split(parts[3], ',')) p.permissions.push_back(perm);
    } else if (parts[0] == "public" && parts.size() >= 2) {
        p.kind = PrincipalKind::public_device;
        p.device_id = parts[1];
        if (parts.size() >= 3)
            for (auto& perm : split(parts[2], ',')) p.permissions.push_back(perm);
    }
    return AuthDecision::allow(std::move(p));
}

GatewayFixture::GatewayFixture(GatewaySettings s, std::size_t queue_capacity, OverflowPolicy policy)
    : transport(std::make_shared<InMemoryTransport>(queue_capacity, policy)) {
    gw = std::make_unique<Gateway>(std::move(s), store, transport, std::make_shared<ScriptedAuthorizer>(), clock);
}

ConnectionId connect_as(Gateway& gw, InMemoryTransport& transport, const std::string& as) {
    ConnectRequest req;
    req.query["as"] = as;
    req.connection_id = make_connection_id();
    transport.open(req.connection_id);
    auto r = gw.on_connect(req);
    if (!r.accepted) return {};
    return r.id;
}

ConnectionId GatewayFixture::connect(const std::string& as) { return connect_as(*gw, *transport, as); }

std::vector<nlohmann::json> GatewayFixture::frames(const ConnectionId& id) {
    std::vector<nlohmann::json> out;
    for (auto& f : transport->drain(id)) out.push_back(nlohmann::json::parse(f));
    return out;
}

std::vector<nlohmann::json> GatewayFixture::say(const ConnectionId& id, const std::string& text) {
    gw->on_message(id, text);
    return frames(id);
}

}  // namespace wsgate::test
