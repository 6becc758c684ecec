// The demo's HTTP request checks and bodies. See demo_http.hpp.
#include "demo_http.hpp"

#include <openssl/crypto.h>

namespace demo {

using nlohmann::json;

bool admin_ok(const wsgate::beast::HttpRequest& req, const std::string& key) {
    std::string presented;
    if (auto* h = req.header("x-admin-key")) presented = *h;
    else if (auto* auth = req.header("authorization"); auth && auth->rfind("Bearer ", 0) == 0) presented = auth->substr(7);
    return presented.size() == key.size() && !key.empty() &&
           CRYPTO_memcmp(presented.data(), key.data(), key.size()) == 0;
}

std::optional<wsgate::Envelope> publish_envelope(const std::string& body_text, wsgate::TimePoint now) {
    auto body = json::parse(body_text, nullptr, false);
    // Every field is type-checked here: a wrong type is the client's error (400), not a 500.
    const auto field_is = [&](const char* k, auto pred) { return !body.contains(k) || pred(body[k]); };
    if (body.is_discarded() || !body.is_object() || !body.contains("topic") || !body["topic"].is_string() ||
        !field_is("type", [](const json& v) { return v.is_string(); }) ||
        !field_is("fields", [](const json& v) { return v.is_object(); }))
        return std::nullopt;
    wsgate::Envelope env{body.value("type", "event")};
    env.topic(body["topic"].get<std::string>()).timestamp(now);
    if (body.contains("data")) env.data(body["data"]);
    if (auto f = body.find("fields"); f != body.end()) {
        for (const auto& [k, v] : f->items()) {
            if (k == "type" || k == "timestamp" || k == "id" || k == "topic" || k == "data") continue;
            env.field(k, v);
        }
    }
    return env;
}

std::optional<std::string> token_request_device_id(const std::string& body_text, std::string& device_id) {
    if (body_text.empty()) return std::nullopt;
    auto body = json::parse(body_text, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return "body must be a JSON object";
    if (auto it = body.find("deviceId"); it != body.end() && it->is_string()) device_id = it->get<std::string>();
    if (device_id.size() > 128) return "deviceId too long";
    return std::nullopt;
}

}  // namespace demo
