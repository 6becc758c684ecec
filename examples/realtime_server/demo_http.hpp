#pragma once
// The demo's HTTP endpoints apart from their wiring in main.cpp: the recent-events feed for
// polling pages, the admin key check, and the request bodies of POST /public/token and /publish.

#include <wsgate/beast/server.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/envelope.hpp>

#include <nlohmann/json.hpp>

#include <deque>
#include <mutex>
#include <optional>
#include <string>

namespace demo {

// The last events published through POST /publish, for pages polling while disconnected.
class RecentEvents {
public:
    void add(nlohmann::json e) {
        std::lock_guard lk(mu_);
        events_.push_back(std::move(e));
        if (events_.size() > 50) events_.pop_front();
    }
    nlohmann::json since(const std::string& topic) const {
        std::lock_guard lk(mu_);
        auto out = nlohmann::json::array();
        for (const auto& e : events_) if (topic.empty() || e.value("topic", "") == topic) out.push_back(e);
        return out;
    }

private:
    mutable std::mutex mu_;
    std::deque<nlohmann::json> events_;
};

/// True if the request presents `key` as `X-Admin-Key` or `Authorization: Bearer` (constant-time compare).
bool admin_ok(const wsgate::beast::HttpRequest& req, const std::string& key);

// The admin publish body: {"topic", "type"?, "data"?, "fields"?: {extra top-level fields}}, each type-checked.
std::optional<wsgate::Envelope> publish_envelope(const std::string& body_text, wsgate::TimePoint now);

/// The device id of a token request body (`{"deviceId"?}`, empty body allowed) into `device_id`;
/// the error text if the body is not a JSON object or the id is longer than 128 characters.
std::optional<std::string> token_request_device_id(const std::string& body, std::string& device_id);

}  // namespace demo
