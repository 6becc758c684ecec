#pragma once
// Definitions for event_router.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/event_router.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/gateway.hpp>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace wsgate {

WSGATE_INLINE bool TopicRule::matches(std::string_view topic) const noexcept {
    if (!pattern.empty() && pattern.back() == '*')
        return topic.substr(0, pattern.size() - 1) == std::string_view{pattern}.substr(0, pattern.size() - 1) &&
               topic.size() >= pattern.size() - 1;
    return topic == pattern;
}

// ---- MessageContext ---------------------------------------------------------------------

WSGATE_INLINE MessageContext::MessageContext(Gateway& gw, const ConnectionRecord& rec, const nlohmann::json& msg,
                                             std::string route, TimePoint now)
    : gw_(gw), rec_(rec), msg_(msg), route_(std::move(route)), now_(now) {
    if (!msg_.is_object()) return;
    auto it = msg_.find("ref");
    if (it == msg_.end()) return;
    if (it->is_number_integer() || (it->is_string() && it->get_ref<const std::string&>().size() <= 64)) ref_ = *it;
}

WSGATE_INLINE void MessageContext::reply(const Envelope& e) {
    replied_ = true;
    if (ref_.is_null()) {
        gw_.send_to(rec_.id, e);
        return;
    }
    Envelope with_ref = e;
    with_ref.field("ref", ref_);
    gw_.send_to(rec_.id, with_ref);
}

WSGATE_INLINE void MessageContext::reply_error(int status, std::string_view message) {
    replied_ = true;
    gw_.send_error(rec_.id, status, message, ref_);
}

WSGATE_INLINE void MessageContext::ack(nlohmann::json fields) {
    Envelope e{"ack"};
    if (fields.is_object())
        for (auto& [k, v] : fields.items())
            if (k != "type" && k != "timestamp" && k != "id") e.field(k, v);
    reply(e);
}

WSGATE_INLINE BroadcastReport MessageContext::publish(const Envelope& e, const Audience& a) { return gw_.publish(e, a); }

// ---- EventRouter ------------------------------------------------------------------------

WSGATE_INLINE EventRouter::EventRouter(RouterSettings s) : settings_(std::move(s)) {
    if (settings_.route_key.empty()) throw std::invalid_argument("wsgate::RouterSettings::route_key is empty");
    const auto& f = settings_.sender.field;
    if (f.empty() || f == "type" || f == "timestamp" || f == "id" || f == "topic" || f == "data")
        throw std::invalid_argument("wsgate::RouterSettings::sender.field must name a field of its own, not '" + f +
                                    "'");
    if (settings_.route_key.front() == '/') {
        try {
            route_pointer_.emplace(settings_.route_key);
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument("wsgate::RouterSettings::route_key is not a JSON pointer: " +
                                        std::string{e.what()});
        }
    }
}

WSGATE_INLINE void EventRouter::on(const std::string& route, Handler h, RouteAccess access) {
    std::unique_lock lock(mu_);
    handlers_[route] = Route{std::move(h), access};
}

WSGATE_INLINE void EventRouter::on(const std::string& route, const std::string& action, Handler h, RouteAccess access) {
    std::unique_lock lock(mu_);
    action_handlers_[route][action] = Route{std::move(h), access};
}

WSGATE_INLINE std::error_code EventRouter::route_of(const nlohmann::json& msg, std::string& route) const {
    // `{"type":"ping"}` is every client's heartbeat: it is a ping whatever field names the route,
    // so a host routing by `action` never answers its clients' heartbeats with an error.
    if (auto t = msg.find("type"); t != msg.end() && t->is_string() && t->get_ref<const std::string&>() == "ping") {
        route = "ping";
        return {};
    }
    const nlohmann::json* v = nullptr;
    if (route_pointer_) {
        if (msg.contains(*route_pointer_)) v = &msg.at(*route_pointer_);
    } else if (auto it = msg.find(settings_.route_key); it != msg.end()) {
        v = &*it;
    }
    if (v == nullptr || !v->is_string() || v->get_ref<const std::string&>().empty())
        return protocol_errc::missing_route;
    route = v->get<std::string>();
    return {};
}

WSGATE_INLINE bool EventRouter::reserved_event(std::string_view type) const noexcept {
    if (type == "ack" || type == "error" || type == "pong") return true;
    return std::any_of(settings_.reserved_event_types.begin(), settings_.reserved_event_types.end(),
                       [&](const std::string& r) { return r == type; });
}

WSGATE_INLINE bool EventRouter::topic_from(MessageContext& ctx, std::string& topic) const {
    auto it = ctx.message().find("topic");
    if (it == ctx.message().end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
        ctx.reply_error(400, "'topic' must be a non-empty string");
        return false;
    }
    const auto& t = it->get_ref<const std::string&>();
    if (t.size() > settings_.max_topic_length) {
        ctx.reply_error(400, "'topic' is too long");
        return false;
    }
    for (unsigned char c : t)
        if (c < 0x20 || c == 0x7f) {
            ctx.reply_error(400, "'topic' contains control characters");
            return false;
        }
    topic = t;
    return true;
}

WSGATE_INLINE void EventRouter::builtin_ping(MessageContext& ctx) { ctx.reply(Envelope{"pong"}); }

namespace detail {

inline nlohmann::json position_json(const StreamPosition& p) { return {{"offset", p.offset}, {"epoch", p.epoch}}; }

// `since` of a subscribe: {"offset": unsigned, "epoch": a string of at most 64 characters, empty
// only with offset 0 (the position of a stream never published to)}.
inline bool parse_position(const nlohmann::json& j, StreamPosition& out) {
    if (!j.is_object()) return false;
    auto o = j.find("offset");
    auto e = j.find("epoch");
    if (o == j.end() || !o->is_number_unsigned() || e == j.end() || !e->is_string()) return false;
    const auto& epoch = e->get_ref<const std::string&>();
    if ((epoch.empty() && o->get<std::uint64_t>() != 0) || epoch.size() > 64) return false;
    out.offset = o->get<std::uint64_t>();
    out.epoch = epoch;
    return true;
}

}  // namespace detail

WSGATE_INLINE void EventRouter::builtin_subscribe(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    SubscribeOptions options;
    if (auto it = ctx.message().find("since"); it != ctx.message().end() && !it->is_null()) {
        StreamPosition since;
        if (!detail::parse_position(*it, since))
            return ctx.reply_error(400, "'since' must be {\"offset\": a non-negative integer, \"epoch\": a string}");
        options.since = std::move(since);
    }
    // The ack goes out before any replayed publication.
    options.before_replay = [&](const SubscriptionResult& r) {
        if (r.error == protocol_errc::forbidden) return ctx.reply_error(403, "not permitted to subscribe to this topic");
        if (r.error == protocol_errc::unknown_connection) return ctx.reply_error(410, "connection is gone");
        if (r.error) return ctx.reply_error(status_of(r.error), r.error.message());
        nlohmann::json fields{{"action", "subscribe"}, {"topic", topic}};
        if (r.position) fields["position"] = detail::position_json(*r.position);
        if (r.recovery.attempted) {
            fields["recovered"] = r.recovery.recovered;
            fields["missed"] = r.recovery.missed;
            fields["resumedFrom"] = r.recovery.from;
            if (!r.recovery.recovered) fields["reason"] = r.recovery.reason;
        }
        ctx.ack(std::move(fields));
    };
    ctx.gateway().subscribe(ctx.connection(), topic, options);
}

WSGATE_INLINE void EventRouter::builtin_history(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    std::size_t limit = 0;
    if (auto it = ctx.message().find("limit"); it != ctx.message().end()) {
        if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0)
            return ctx.reply_error(400, "'limit' must be a positive integer");
        limit = static_cast<std::size_t>(std::min<std::uint64_t>(it->get<std::uint64_t>(), SIZE_MAX));
    }
    auto r = ctx.gateway().history(ctx.principal(), topic, limit);
    if (r.error == protocol_errc::forbidden) return ctx.reply_error(403, "not permitted to read this topic");
    if (r.error) return ctx.reply_error(status_of(r.error), r.error.message());
    auto publications = nlohmann::json::array();
    for (const auto& frame : r.frames) {
        auto j = nlohmann::json::parse(frame, nullptr, false);
        if (!j.is_discarded()) publications.push_back(std::move(j));
    }
    ctx.reply(Envelope{"history"}
                  .topic(topic)
                  .field("position", detail::position_json(r.position))
                  .field("publications", std::move(publications)));
}

WSGATE_INLINE void EventRouter::builtin_ack(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    const auto& msg = ctx.message();
    StreamPosition p;
    auto o = msg.find("offset");
    if (o == msg.end() || !o->is_number_unsigned()) return ctx.reply_error(400, "'offset' must be a non-negative integer");
    p.offset = o->get<std::uint64_t>();
    if (auto e = msg.find("epoch"); e != msg.end()) {
        if (!e->is_string() || e->get_ref<const std::string&>().empty() || e->get_ref<const std::string&>().size() > 64)
            return ctx.reply_error(400, "'epoch' must be a non-empty string of at most 64 characters");
        p.epoch = e->get<std::string>();
    }
    if (auto ec = ctx.gateway().acknowledge(ctx.connection(), topic, p)) {
        if (ec == protocol_errc::forbidden) return ctx.reply_error(403, "not permitted to read this topic");
        return ctx.reply_error(status_of(ec), ec.message());
    }
    ctx.ack({{"action", "ack"}, {"topic", topic}, {"offset", p.offset}});
}

WSGATE_INLINE void EventRouter::builtin_presence(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    auto r = ctx.gateway().presence(ctx.principal(), topic);
    if (r.error == protocol_errc::forbidden) return ctx.reply_error(403, "not permitted to read this topic");
    if (r.error) return ctx.reply_error(status_of(r.error), r.error.message());
    auto members = nlohmann::json::array();
    for (const auto& m : r.members) {
        nlohmann::json j{{"kind", std::string{to_string(m.kind)}}, {"connections", m.connections}};
        if (!m.user_id.empty()) j["userId"] = m.user_id;
        if (!m.device_id.empty()) j["deviceId"] = m.device_id;
        members.push_back(std::move(j));
    }
    ctx.reply(Envelope{"presence"}
                  .topic(topic)
                  .field("connections", r.connections)
                  .field("users", r.users)
                  .field("members", std::move(members)));
}

WSGATE_INLINE void EventRouter::builtin_unsubscribe(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    const auto r = ctx.gateway().unsubscribe(ctx.connection().id, topic);
    if (r.error) return ctx.reply_error(status_of(r.error), r.error.message());
    const bool was = r.changed;
    ctx.ack({{"action", "unsubscribe"}, {"topic", topic}, {"subscribed", false}, {"wasSubscribed", was}});
}

WSGATE_INLINE void EventRouter::builtin_publish(MessageContext& ctx) {
    std::string topic;
    if (!topic_from(ctx, topic)) return;
    if (!ctx.gateway().may_publish(ctx.principal(), topic)) {
        ctx.reply_error(403, "not permitted to publish to this topic");
        return;
    }
    const auto& msg = ctx.message();
    std::string type = "message";
    if (auto it = msg.find("event"); it != msg.end()) {
        if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
            ctx.reply_error(400, "'event' must be a non-empty string");
            return;
        }
        type = it->get<std::string>();
        if (type.size() > settings_.max_event_length) {
            ctx.reply_error(400, "'event' is too long");
            return;
        }
        for (unsigned char c : type)
            if (c < 0x20 || c == 0x7f) {
                ctx.reply_error(400, "'event' contains control characters");
                return;
            }
    }
    // A client may not speak with the server's voice: its own replies and reserved names.
    if (reserved_event(type)) {
        ctx.reply_error(400, "'event' names a reserved server event type");
        return;
    }
    Envelope e{type};
    e.topic(topic);
    if (auto it = msg.find("data"); it != msg.end()) e.data(*it);
    // Every client-originated delivery names its sender, so receivers can tell it from a
    // server event.
    const auto& p = ctx.principal();
    nlohmann::json from = nlohmann::json::object();
    if (settings_.sender.user_id) from["userId"] = p.user_id;
    if (settings_.sender.device_id && !p.device_id.empty()) from["deviceId"] = p.device_id;
    if (settings_.sender.nickname && !p.nickname.empty()) from["nickname"] = p.nickname;
    e.field(settings_.sender.field, std::move(from));
    auto audience = Audience::topic(topic);
    // The sender gets an ack, not its own event, unless it asks for an echo.
    const bool echo = msg.value("echo", false);
    if (!echo) audience.except_sender(ctx.connection());
    const auto report = ctx.publish(e, audience);
    nlohmann::json fields{{"action", "publish"}, {"topic", topic}, {"delivered", report.delivered}};
    if (report.offset > 0) fields["offset"] = report.offset;
    ctx.ack(std::move(fields));
}

WSGATE_INLINE void EventRouter::dispatch(MessageContext& ctx) {
    const Route* found = nullptr;
    Route route;
    {
        std::shared_lock lock(mu_);
        if (auto a = action_handlers_.find(ctx.route()); a != action_handlers_.end()) {
            auto it = ctx.message().find(settings_.action_key);
            if (it != ctx.message().end() && it->is_string())
                if (auto h = a->second.find(it->get_ref<const std::string&>()); h != a->second.end())
                    found = &h->second;
            if (found == nullptr) {
                if (auto h = handlers_.find(ctx.route()); h != handlers_.end()) found = &h->second;
            }
            if (found == nullptr) {
                lock.unlock();
                ctx.reply_error(400, "unknown action for '" + ctx.route().substr(0, 64) + "'");
                return;
            }
        } else if (auto h = handlers_.find(ctx.route()); h != handlers_.end()) {
            found = &h->second;
        }
        if (found != nullptr) route = *found;
    }
    if (route.fn) {
        if (ctx.principal().kind == PrincipalKind::anonymous && route.access != RouteAccess::include_anonymous) {
            ctx.reply_error(403, "anonymous connections may not call '" + ctx.route().substr(0, 64) + "'");
            return;
        }
        route.fn(ctx);
        return;
    }
    const auto& r = ctx.route();
    if (r == "ping") return builtin_ping(ctx);
    if (r == "refresh") return builtin_refresh(ctx);
    if (r == "subscribe") return builtin_subscribe(ctx);
    if (r == "unsubscribe") return builtin_unsubscribe(ctx);
    if (r == "publish") return builtin_publish(ctx);
    if (r == "history") return builtin_history(ctx);
    if (r == "ack") return builtin_ack(ctx);
    if (r == "presence") return builtin_presence(ctx);
    if (settings_.unknown_route == UnknownRoutePolicy::ack) return acknowledge(ctx);
    ctx.reply_error(400, "unknown message type '" + r.substr(0, 64) + "'");
}

WSGATE_INLINE void EventRouter::acknowledge(MessageContext& ctx) { ctx.ack({{"message", "Message received"}}); }

WSGATE_INLINE void EventRouter::builtin_refresh(MessageContext& ctx) {
    auto it = ctx.message().find("token");
    if (it == ctx.message().end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
        ctx.reply_error(400, "'token' must be a non-empty string");
        return;
    }
    auto& gw = ctx.gateway();
    const ConnectionRecord& rec = ctx.connection();
    AuthDecision d = gw.reauthorize(rec, it->get_ref<const std::string&>());
    // A failed refresh changes nothing: the connection keeps its old principal and deadline.
    if (!d.allowed) {
        ctx.reply_error(401, d.reason.empty() ? "unauthorized" : d.reason);
        return;
    }
    const Principal& was = rec.principal;
    const Principal& fresh = d.principal;
    if (fresh.kind != was.kind || fresh.user_id != was.user_id || fresh.device_id != was.device_id) {
        // Someone else's token on this socket: the connection is not trusted any more.
        ctx.reply_error(403, "token belongs to another principal");
        gw.end(rec.id, EndReason::policy, "refresh with another principal's token");
        return;
    }
    const TimePoint deadline = gw.deadline_for(rec, fresh, ctx.now());
    if (deadline <= ctx.now()) {
        ctx.reply_error(401, "expired");
        return;
    }
    if (!gw.refresh_principal(rec.id, fresh, deadline)) {
        ctx.reply_error(410, "connection is gone");
        return;
    }
    for (const auto& topic : gw.drop_unreadable(rec.id, fresh))
        ctx.reply(Envelope{"unsubscribed"}.topic(topic).field("reason", "permission"));
    ctx.ack({{"action", "refresh"}, {"expires_at", format_iso8601(deadline)}});
}

}  // namespace wsgate
