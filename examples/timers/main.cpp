// Seed 003, the shared timers app: user → devices → connections, messages routed by `type`
// then `action`, updates sent to every user a timer is shared with except the sending device.
//
// Users connect with a signed session token (HS256; `sub` is the user, `deviceId` the device:
// signed, unlike a query parameter). Host handlers:
//   timer/update, timer/stop   → the owner's other devices and everyone the timer is shared with
//   share/add, share/remove    → records the relationship and tells the other user
// An unknown type or action gets a 400 error; messages over 16 KiB get 413; more than
// 10 messages a second (burst 20) get 429; a sixth connection of one user is refused.
//
//   timers_example           prints what each device receives
//   timers_example --check   also verifies it and exits 1 on any difference
#include <wsgate/auth.hpp>
#include <wsgate/wsgate.hpp>

#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <set>

using namespace std::chrono_literals;

namespace {

/// The host's own state: which users each timer is shared with, and who owns it.
class TimerBook {
public:
    void own(const std::string& timer, const std::string& user) {
        std::lock_guard lock(mu_);
        owner_.try_emplace(timer, user);
    }
    void share(const std::string& timer, const std::string& user) {
        std::lock_guard lock(mu_);
        shared_[timer].insert(user);
    }
    void unshare(const std::string& timer, const std::string& user) {
        std::lock_guard lock(mu_);
        shared_[timer].erase(user);
    }
    /// The owner and every user the timer is shared with.
    std::vector<std::string> audience(const std::string& timer) {
        std::lock_guard lock(mu_);
        std::set<std::string> users = shared_[timer];
        if (auto it = owner_.find(timer); it != owner_.end()) users.insert(it->second);
        return {users.begin(), users.end()};
    }

private:
    std::mutex mu_;
    std::map<std::string, std::string> owner_;
    std::map<std::string, std::set<std::string>> shared_;
};

bool string_field(const nlohmann::json& m, const char* key, std::string& out) {
    auto it = m.find(key);
    if (it == m.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return false;
    out = it->get<std::string>();
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    const std::string secret = "timers-example-secret-" + wsgate::random_token(16);

    auto clock = std::make_shared<wsgate::ManualClock>(std::chrono::system_clock::now());
    auto verifier = wsgate::jwt::Verifier{}
                        .allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, secret))
                        .require_claim("sub")
                        .require_claim("exp")
                        .with_clock(clock);
    auto authorizer = std::make_shared<wsgate::TokenAuthorizer>(verifier);  // session tokens only

    wsgate::GatewaySettings settings;
    settings.router.unknown_route = wsgate::UnknownRoutePolicy::error;  // seed 003: 400
    settings.max_message_bytes = 16 * 1024;
    settings.rate_per_second = 10;
    settings.rate_burst = 20;
    settings.max_connections_per_user = 5;
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::Gateway gateway{settings, store, transport, authorizer, clock};

    TimerBook book;
    auto fan_out = [&](wsgate::MessageContext& ctx, const std::string& timer_id) {
        auto e = wsgate::Envelope{"timer"}.field("action", ctx.message().value("action", ""));
        if (auto t = ctx.message().find("timer"); t != ctx.message().end()) e.field("timer", *t);
        e.field("timerId", timer_id);
        auto report = ctx.publish(e, wsgate::Audience::users(book.audience(timer_id)).except_sender(ctx.connection()));
        ctx.ack({{"status", "processed"}, {"delivered", report.delivered}});
    };
    auto& router = gateway.router();
    router.on("timer", "update", [&](wsgate::MessageContext& ctx) {
        const auto& m = ctx.message();
        std::string id;
        if (!m.contains("timer") || !m["timer"].is_object() || !string_field(m["timer"], "id", id))
            return ctx.reply_error(400, "timer.id is required");
        book.own(id, ctx.principal().user_id);
        fan_out(ctx, id);
    });
    router.on("timer", "stop", [&](wsgate::MessageContext& ctx) {
        std::string id;
        if (!string_field(ctx.message(), "timerId", id)) return ctx.reply_error(400, "timerId is required");
        fan_out(ctx, id);
    });
    auto share = [&](bool add) {
        return [&, add](wsgate::MessageContext& ctx) {
            std::string id, with;
            if (!string_field(ctx.message(), "timerId", id) || !string_field(ctx.message(), "sharedWithUser", with))
                return ctx.reply_error(400, "timerId and sharedWithUser are required");
            book.own(id, ctx.principal().user_id);
            if (add) book.share(id, with);
            auto e = wsgate::Envelope{"share"}.field("action", add ? "add" : "remove").field("timerId", id)
                         .field("sharedWithUser", with).field("sharedBy", ctx.principal().user_id);
            auto report = ctx.publish(e, wsgate::Audience::user(with).except_sender(ctx.connection()));
            if (!add) book.unshare(id, with);
            ctx.ack({{"status", "processed"}, {"delivered", report.delivered}});
        };
    };
    router.on("share", "add", share(true));
    router.on("share", "remove", share(false));

    auto token_for = [&](const std::string& user, const std::string& device) {
        return wsgate::jwt::sign({{"sub", user}, {"deviceId", device}, {"exp", wsgate::to_unix_seconds(clock->now() + 1h)}},
                                 wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, secret));
    };
    auto connect = [&](const std::string& user, const std::string& device, std::string token = {}) {
        wsgate::ConnectRequest req;
        req.connection_id = wsgate::make_connection_id();
        req.query["token"] = token.empty() ? token_for(user, device) : token;
        transport->open(req.connection_id);
        auto r = gateway.on_connect(req);
        if (!r.accepted) std::cout << "connect " << user << "/" << device << " refused: " << r.status << ' ' << r.reason << '\n';
        return r.accepted ? r.id : wsgate::ConnectionId{};
    };

    // ann has a phone and a tablet; bob has a phone.
    auto ann_phone = connect("ann", "phone");
    auto ann_tablet = connect("ann", "tablet");
    auto bob_phone = connect("bob", "phone");
    auto forged = connect("eve", "laptop", token_for("eve", "laptop") + "x");  // bad signature

    std::map<std::string, std::vector<nlohmann::json>> seen;
    auto say = [&](const std::string& who, const wsgate::ConnectionId& id, const std::string& text) {
        gateway.on_message(id, text);
        (void)who;
    };
    auto collect = [&] {
        for (auto& [name, id] : std::map<std::string, wsgate::ConnectionId>{
                 {"ann/phone", ann_phone}, {"ann/tablet", ann_tablet}, {"bob/phone", bob_phone}})
            for (auto& f : transport->drain(id)) {
                std::cout << name << " <- " << f << '\n';
                seen[name].push_back(nlohmann::json::parse(f));
            }
    };

    say("ann/phone", ann_phone, R"({"type":"timer","action":"update","timer":{"id":"t1","userId":"ann","name":"Tea","totalDuration":"PT3M"}})");
    collect();  // ann/tablet gets the update; ann/phone gets its ack; bob nothing (not shared yet)
    say("ann/phone", ann_phone, R"({"type":"share","action":"add","timerId":"t1","sharedWithUser":"bob"})");
    say("ann/tablet", ann_tablet, R"({"type":"timer","action":"stop","timerId":"t1"})");
    collect();  // bob: share + stop; ann/phone: stop (sent from the tablet)
    say("bob/phone", bob_phone, R"({"type":"alarm"})");
    say("bob/phone", bob_phone, R"({"type":"timer","action":"rewind"})");
    say("bob/phone", bob_phone, R"({"type":"timer","action":"update","timer":{"id":"t1","name":")" + std::string(20000, 'x') + "\"}}");
    collect();

    // A sixth device of one user is refused (connection limit).
    int accepted = 0;
    for (int i = 0; i < 5; ++i) accepted += connect("cat", "d" + std::to_string(i)).empty() ? 0 : 1;
    auto sixth = connect("cat", "d5");

    if (!check) return 0;
    auto types = [&](const std::string& who) {
        std::vector<std::string> out;
        for (auto& j : seen[who]) out.push_back(j["type"].get<std::string>() + (j.contains("status") ? ":" + j["status"].dump() : "") +
                                               (j.contains("action") ? ":" + j["action"].get<std::string>() : ""));
        return out;
    };
    const auto ann_p = types("ann/phone"), ann_t = types("ann/tablet"), bob = types("bob/phone");
    bool ok = forged.empty() && accepted == 5 && sixth.empty() &&
              ann_p == std::vector<std::string>{"ack:\"processed\"", "ack:\"processed\"", "timer:stop"} &&
              ann_t == std::vector<std::string>{"timer:update", "ack:\"processed\""} &&
              bob == std::vector<std::string>{"share:add", "timer:stop", "error:400", "error:400", "error:413"} &&
              // The seed's share message as sent: timerId and sharedWithUser kept (plus who shared).
              seen["bob/phone"][0]["timerId"] == "t1" && seen["bob/phone"][0]["sharedWithUser"] == "bob" &&
              seen["bob/phone"][0]["sharedBy"] == "ann";
    if (!ok) {
        for (auto* v : {&ann_p, &ann_t, &bob}) {
            for (auto& s : *v) std::cout << s << ' ';
            std::cout << '\n';
        }
    }
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}
