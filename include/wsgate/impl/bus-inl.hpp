#pragma once
// Definitions for bus.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/bus.hpp>
#include <wsgate/detail/config.hpp>

#include <algorithm>

namespace wsgate {

WSGATE_INLINE std::vector<RoutedBusMessage> route_bus_message(const BusMessage& m, std::size_t max_user_routes) {
    std::vector<RoutedBusMessage> out;
    switch (m.audience.kind) {
        case Audience::Kind::everyone:
        case Audience::Kind::connections: out.push_back({BusRoute::everyone(), m}); break;
        case Audience::Kind::topic: out.push_back({BusRoute::topic(m.audience.topic_name), m}); break;
        case Audience::Kind::user:
        case Audience::Kind::users: {
            std::vector<std::string> users = m.audience.user_ids;
            std::sort(users.begin(), users.end());
            users.erase(std::unique(users.begin(), users.end()), users.end());
            users.erase(std::remove(users.begin(), users.end(), std::string{}), users.end());
            if (users.size() > max_user_routes) {
                out.push_back({BusRoute::everyone(), m});
                break;
            }
            out.reserve(users.size());
            for (auto& user : users) {
                RoutedBusMessage leg{BusRoute::user(user), m};
                leg.message.audience.kind = Audience::Kind::user;
                leg.message.audience.user_ids.assign(1, std::move(user));
                out.push_back(std::move(leg));
            }
            break;
        }
    }
    return out;
}

WSGATE_INLINE std::string encode_bus_message(const BusMessage& m) {
    nlohmann::json j{{"origin", m.origin_node}, {"audience", m.audience}, {"payload", m.payload}};
    if (m.offset > 0) j["offset"] = m.offset;
    return j.dump();
}

WSGATE_INLINE bool decode_bus_message(std::string_view text, BusMessage& out) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return false;
    try {
        BusMessage m;
        m.origin_node = j.at("origin").get<std::string>();
        m.audience = j.at("audience").get<Audience>();
        m.payload = j.at("payload").get<std::string>();
        if (auto it = j.find("offset"); it != j.end()) {
            if (!it->is_number_unsigned()) return false;
            m.offset = it->get<std::uint64_t>();
        }
        out = std::move(m);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace wsgate
