// The client's stream positions: since on resubscribe, duplicates by offset, recovery acks.
#include <wsgate/client/stream_tracker.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsgate::client {

namespace {

using Json = nlohmann::ordered_json;

// Field readers that never throw: a missing member or one of another type is nullopt.
std::optional<std::string> string_field(const Json& j, const char* name) {
    const auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
}

std::optional<std::uint64_t> offset_field(const Json& j, const char* name) {
    const auto it = j.find(name);
    if (it == j.end()) return std::nullopt;
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    if (it->is_number_integer()) {
        const auto v = it->get<std::int64_t>();
        if (v >= 0) return static_cast<std::uint64_t>(v);
    }
    return std::nullopt;
}

// `{"offset":N,"epoch":"E"}`; the epoch is empty only in {0, ""}, a stream never published to.
std::optional<StreamPosition> position_field(const Json& j, const char* name) {
    const auto it = j.find(name);
    if (it == j.end() || !it->is_object()) return std::nullopt;
    auto offset = offset_field(*it, "offset");
    auto epoch = string_field(*it, "epoch");
    if (!offset || !epoch || (epoch->empty() && *offset != 0)) return std::nullopt;
    return StreamPosition{*offset, std::move(*epoch)};
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json since_of(std::uint64_t offset, const std::string& epoch) { return Json{{"offset", offset}, {"epoch", epoch}}; }

}  // namespace

StreamTracker::StreamTracker(std::size_t window) : window_(window) {
    if (window_ == 0) throw std::invalid_argument("wsgate::client::StreamTracker: window must be at least 1");
}

void StreamTracker::subscribe(const std::string& topic) {
    std::lock_guard lock(mutex_);
    streams_.try_emplace(topic);
}

void StreamTracker::unsubscribe(const std::string& topic) {
    std::lock_guard lock(mutex_);
    streams_.erase(topic);
}

bool StreamTracker::see(Stream& s, std::uint64_t offset) {
    if (offset <= s.floor || !s.seen.insert(offset).second) return false;
    // The floor follows the contiguous run of seen offsets, and stays within `window_` of the top.
    const std::uint64_t top = *s.seen.rbegin();
    if (top - s.floor > window_) {
        s.floor = top - window_;
        s.seen.erase(s.seen.begin(), s.seen.upper_bound(s.floor));
    }
    while (!s.seen.empty() && *s.seen.begin() == s.floor + 1) {
        s.floor = *s.seen.begin();
        s.seen.erase(s.seen.begin());
    }
    return true;
}

void StreamTracker::adopt(Stream& s, const StreamPosition& p) {
    if (!s.known || s.epoch != p.epoch) {
        s.known = true;
        s.epoch = p.epoch;
        s.floor = p.offset;
        s.seen.clear();
        return;
    }
    if (p.offset <= s.floor) return;
    s.floor = p.offset;
    s.seen.erase(s.seen.begin(), s.seen.upper_bound(s.floor));
    while (!s.seen.empty() && *s.seen.begin() == s.floor + 1) {
        s.floor = *s.seen.begin();
        s.seen.erase(s.seen.begin());
    }
}

StreamTracker::Inspection StreamTracker::inspect(std::string_view frame) {
    // Cheap test first: frames without a position or a recovery report are not parsed.
    if (frame.find("\"offset\"") == std::string_view::npos && frame.find("\"recovered\"") == std::string_view::npos)
        return {};
    try {
        const auto j = Json::parse(frame, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) return {};
        const auto topic = string_field(j, "topic");
        if (!topic) return {};
        const auto type = string_field(j, "type");

        std::lock_guard lock(mutex_);
        const auto it = streams_.find(*topic);
        if (it == streams_.end()) return {};
        Stream& s = it->second;

        if (type == "ack") {
            if (string_field(j, "action") != "subscribe") return {};
            const auto position = position_field(j, "position");
            const auto recovered = j.find("recovered");
            Inspection out;
            if (recovered != j.end() && recovered->is_boolean()) {
                RecoveryInfo info;
                info.topic = *topic;
                info.recovered = recovered->get<bool>();
                info.missed = static_cast<std::size_t>(offset_field(j, "missed").value_or(0));
                info.reason = string_field(j, "reason").value_or("");
                info.resumed_from = string_field(j, "resumedFrom").value_or("");
                if (position) info.position = *position;
                out.recovery = std::move(info);
            }
            // A recovered stream continues from our own position: the replay follows.
            if (position && (!s.known || (out.recovery && !out.recovery->recovered))) adopt(s, *position);
            return out;
        }

        const auto offset = offset_field(j, "offset");
        const auto epoch = string_field(j, "epoch");
        if (!offset || *offset == 0 || !epoch || epoch->empty()) return {};
        if (!s.known || s.epoch != *epoch) {
            // At {0, ""} nothing was published before the subscription: the stream's first epoch
            // starts at 0. Otherwise the first publication of an unknown epoch starts the tracking.
            const bool from_start = s.known && s.epoch.empty() && s.floor == 0;
            adopt(s, {from_start ? 0 : *offset - 1, *epoch});
        }
        Inspection out;
        out.duplicate = !see(s, *offset);
        if (out.duplicate) ++duplicates_;
        return out;
    } catch (const std::exception&) {
        return {};  // received text never stops the client
    }
}

std::string StreamTracker::subscribe_frame(std::string_view topic) const {
    Json j{{"type", "subscribe"}, {"topic", topic}};
    std::lock_guard lock(mutex_);
    if (const auto it = streams_.find(topic); it != streams_.end() && it->second.known)
        j["since"] = since_of(it->second.floor, it->second.epoch);
    return dump(j);
}

std::optional<std::string> StreamTracker::with_since(std::string_view frame) const {
    if (frame.find("subscribe") == std::string_view::npos) return std::nullopt;
    try {
        auto j = Json::parse(frame, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object() || string_field(j, "type") != "subscribe" || j.contains("since")) return std::nullopt;
        const auto topic = string_field(j, "topic");
        if (!topic) return std::nullopt;
        std::lock_guard lock(mutex_);
        const auto it = streams_.find(*topic);
        if (it == streams_.end() || !it->second.known) return std::nullopt;
        j["since"] = since_of(it->second.floor, it->second.epoch);
        return dump(j);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::optional<StreamPosition> StreamTracker::position(std::string_view topic) const {
    std::lock_guard lock(mutex_);
    const auto it = streams_.find(topic);
    if (it == streams_.end() || !it->second.known) return std::nullopt;
    return StreamPosition{it->second.floor, it->second.epoch};
}

std::uint64_t StreamTracker::duplicates() const {
    std::lock_guard lock(mutex_);
    return duplicates_;
}

std::vector<std::string> StreamTracker::topics() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    out.reserve(streams_.size());
    for (const auto& [topic, stream] : streams_) out.push_back(topic);
    return out;
}

}  // namespace wsgate::client
