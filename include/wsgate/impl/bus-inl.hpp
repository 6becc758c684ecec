#pragma once
// Definitions for bus.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/bus.hpp>
#include <wsgate/detail/config.hpp>

namespace wsgate {

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
