#pragma once
// Definitions for audience.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/audience.hpp>
#include <wsgate/detail/config.hpp>

#include <stdexcept>

namespace wsgate {

namespace detail {
inline std::string_view kind_name(Audience::Kind k) {
    switch (k) {
        case Audience::Kind::topic: return "topic";
        case Audience::Kind::user: return "user";
        case Audience::Kind::users: return "users";
        case Audience::Kind::connections: return "connections";
        case Audience::Kind::everyone: break;
    }
    return "everyone";
}
}  // namespace detail

WSGATE_INLINE void to_json(nlohmann::json& j, const Audience& a) {
    j = nlohmann::json{{"kind", detail::kind_name(a.kind)}};
    if (!a.topic_name.empty()) j["topic"] = a.topic_name;
    if (!a.user_ids.empty()) j["users"] = a.user_ids;
    if (!a.connection_ids.empty()) j["connections"] = a.connection_ids;
    if (!a.excluded_device.empty()) j["exceptDevice"] = a.excluded_device;
    if (!a.excluded_device_user.empty()) j["exceptDeviceUser"] = a.excluded_device_user;
    if (!a.excluded_connection.empty()) j["exceptConnection"] = a.excluded_connection;
    if (!a.required_permission.empty()) j["permission"] = a.required_permission;
}

WSGATE_INLINE void from_json(const nlohmann::json& j, Audience& a) {
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

}  // namespace wsgate
