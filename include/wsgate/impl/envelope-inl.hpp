#pragma once
// Definitions for envelope.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/envelope.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/random.hpp>

#include <stdexcept>

namespace wsgate {

WSGATE_INLINE Envelope::Envelope(std::string type) : type_(std::move(type)), id_(random_token(12)) {}

WSGATE_INLINE Envelope& Envelope::topic(std::string t) & {
    topic_ = std::move(t);
    return *this;
}

WSGATE_INLINE Envelope& Envelope::data(nlohmann::json d) & {
    data_ = std::move(d);
    return *this;
}

WSGATE_INLINE Envelope& Envelope::field(const std::string& key, nlohmann::json value) & {
    if (key == "type" || key == "timestamp" || key == "id")
        throw std::invalid_argument("wsgate::Envelope::field: '" + key + "' is reserved");
    extra_[key] = std::move(value);
    return *this;
}

WSGATE_INLINE Envelope& Envelope::id(std::string i) & {
    id_ = std::move(i);
    return *this;
}

WSGATE_INLINE Envelope& Envelope::timestamp(TimePoint t) & {
    timestamp_ = t;
    return *this;
}

WSGATE_INLINE Envelope& Envelope::position(std::uint64_t offset, std::string epoch) & {
    offset_ = offset;
    epoch_ = std::move(epoch);
    return *this;
}

WSGATE_INLINE nlohmann::json Envelope::to_json(TimePoint now) const {
    // Extra fields first so that the envelope's own fields always win.
    nlohmann::json j = extra_;
    j["type"] = type_;
    j["timestamp"] = format_iso8601(timestamp_.value_or(now));
    j["id"] = id_;
    if (topic_) j["topic"] = *topic_;
    if (data_) j["data"] = *data_;
    if (offset_) {
        j["offset"] = *offset_;
        j["epoch"] = epoch_;
    }
    return j;
}

}  // namespace wsgate
