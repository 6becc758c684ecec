#pragma once
/** @file envelope.hpp Server → client messages, serialized once per publish and shared. */

#include <wsgate/detail/config.hpp>
#include <wsgate/clock.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace wsgate {

/// An immutable serialized frame shared by every recipient of one publish.
using Payload = std::shared_ptr<const std::string>;

/// Wraps `text` as a Payload.
[[nodiscard]] inline Payload make_payload(std::string text) {
    return std::make_shared<const std::string>(std::move(text));
}

/**
 * Builder for the server → client envelope:
 * `{"type", "timestamp", "id", "topic"?, "data"?, "offset"?, "epoch"?, ...extra}`.
 *
 * @code
 * auto env = wsgate::Envelope{"teams.locked"}.topic("tournament:7").data({{"teams", 8}})
 *                .field("tournamentId", "7");
 * gateway.publish(env, wsgate::Audience::topic("tournament:7"));
 * @endcode
 * @par Thread Safety Value type; not safe to mutate from two threads.
 */
class Envelope {
public:
    /// An envelope of the given `type`; `id` is random and `timestamp` is taken at serialization
    /// unless set.
    explicit Envelope(std::string type);

    Envelope& topic(std::string t) &;
    Envelope&& topic(std::string t) && { return std::move(topic(std::move(t))); }
    Envelope& data(nlohmann::json d) &;
    Envelope&& data(nlohmann::json d) && { return std::move(data(std::move(d))); }
    /// An extra top-level field (`tournamentId`, `leaderboard`, `updates`, ...). Reserved names
    /// (`type`, `timestamp`, `id`) are rejected with std::invalid_argument.
    Envelope& field(const std::string& key, nlohmann::json value) &;
    Envelope&& field(const std::string& key, nlohmann::json value) && {
        return std::move(field(key, std::move(value)));
    }
    Envelope& id(std::string i) &;
    Envelope&& id(std::string i) && { return std::move(id(std::move(i))); }
    Envelope& timestamp(TimePoint t) &;
    Envelope&& timestamp(TimePoint t) && { return std::move(timestamp(t)); }
    /// Stream position within the topic. Gateway::publish() to a topic with history replaces it
    /// with the position the store assigns.
    Envelope& position(std::uint64_t offset, std::string epoch) &;
    Envelope&& position(std::uint64_t offset, std::string epoch) && {
        return std::move(position(offset, std::move(epoch)));
    }

    [[nodiscard]] const std::string& type() const noexcept { return type_; }
    [[nodiscard]] const std::string& id() const noexcept { return id_; }
    [[nodiscard]] const std::optional<std::string>& topic() const noexcept { return topic_; }
    [[nodiscard]] const std::optional<TimePoint>& timestamp() const noexcept { return timestamp_; }

    /// The JSON object; `now` fills `timestamp` if it was not set.
    [[nodiscard]] nlohmann::json to_json(TimePoint now) const;
    /// The serialized frame, shared by all recipients.
    [[nodiscard]] Payload serialize(TimePoint now) const { return make_payload(to_json(now).dump()); }

private:
    std::string type_;
    std::string id_;
    std::optional<TimePoint> timestamp_;
    std::optional<std::string> topic_;
    std::optional<nlohmann::json> data_;
    std::optional<std::uint64_t> offset_;
    std::string epoch_;
    nlohmann::json extra_ = nlohmann::json::object();
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/envelope-inl.hpp>
#endif
