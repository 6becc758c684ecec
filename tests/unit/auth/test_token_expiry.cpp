// A token's `exp` is a connection deadline: token_expiring, close 4001, refresh in place.

#include "catch.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>

using namespace wsgate;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr std::int64_t t0 = 1'700'000'000;

// A Gateway over the memory store and transport with a session + public TokenAuthorizer,
// on a manual clock starting at t0. Topics `a:*` need `read_a`, `b:*` need `read_b`; any user
// reads `news`, holders of `post` publish there.
struct Rig {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(from_unix_seconds(t0));
    jwt::SigningKey session_key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, "expiry-session-secret-0123456789abcdef");
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, "expiry-public-secret-0123456789abcdef"), {}, clock};
    std::shared_ptr<InMemoryConnectionStore> store = std::make_shared<InMemoryConnectionStore>();
    std::shared_ptr<InMemoryTransport> transport = std::make_shared<InMemoryTransport>();
    std::unique_ptr<Gateway> gw;

    explicit Rig(GatewaySettings s = {}) {
        s.router.topic_rules = {{"a:*", "read_a", ""}, {"b:*", "read_b", ""}, {"news", "", "post"}};
        auto auth = std::make_shared<TokenAuthorizer>(
            jwt::Verifier{}.allow(session_key.verification_key()).require_claim("exp").with_clock(clock),
            issuer.verifier());
        gw = std::make_unique<Gateway>(std::move(s), store, transport, auth, clock);
    }

    // A session token for `sub` on `device`, expiring `exp_in` seconds after the clock's now.
    std::string token(const std::string& sub, std::int64_t exp_in, std::vector<std::string> perms = {"read_a", "read_b"},
                      const std::string& device = "phone") {
        const auto now_s = to_unix_seconds(clock->now());
        return jwt::sign({{"sub", sub}, {"deviceId", device}, {"permissions", perms}, {"exp", now_s + exp_in}},
                         session_key);
    }

    ConnectionId connect(const std::string& token) {
        ConnectRequest req;
        req.query["token"] = token;
        req.connection_id = make_connection_id();
        transport->open(req.connection_id);
        auto r = gw->on_connect(req);
        REQUIRE(r.accepted);
        return r.id;
    }

    std::vector<json> say(const ConnectionId& id, const json& msg) {
        transport->drain(id);
        gw->on_message(id, msg.dump());
        return frames(id);
    }
    std::vector<json> frames(const ConnectionId& id) {
        std::vector<json> out;
        for (auto& f : transport->drain(id)) out.push_back(json::parse(f));
        return out;
    }
    bool alive(const ConnectionId& id) { return store->get(id).has_value(); }
};

std::vector<std::string> types_of(const std::vector<json>& frames) {
    std::vector<std::string> out;
    for (const auto& f : frames) out.push_back(f.value("type", ""));
    return out;
}

}  // namespace

TEST_CASE("a connection's deadline is its token's exp when that comes before the TTL", "[auth][expiry]") {
    Rig rig;
    const auto id = rig.connect(rig.token("u-1", 120));
    auto rec = rig.store->get(id);
    REQUIRE(rec);
    REQUIRE(rec->principal.expires_at);
    CHECK(to_unix_seconds(*rec->principal.expires_at) == t0 + 120);
    CHECK(rec->expires_at == from_unix_seconds(t0 + 120));

    // A token that outlives the TTL leaves the TTL in charge.
    const auto long_lived = rig.connect(rig.token("u-2", 7200));
    CHECK(rig.store->get(long_lived)->expires_at == from_unix_seconds(t0) + 1h);
}

TEST_CASE("a connection ends when its token expires, with close 4001 \"token expired\"", "[auth][expiry]") {
    Rig rig;
    std::vector<EndReason> ended;
    rig.gw->set_end_hook([&](const ConnectionRecord&, EndReason r) { ended.push_back(r); });
    const auto id = rig.connect(rig.token("u-1", 120));

    rig.clock->advance(119s);
    CHECK(rig.gw->sweep().token_expired == 0);
    CHECK(rig.alive(id));

    rig.clock->advance(2s);
    const auto report = rig.gw->sweep();
    CHECK(report.token_expired == 1);
    CHECK(report.ttl_expired == 0);
    CHECK_FALSE(rig.alive(id));
    REQUIRE(rig.transport->close_code(id));
    CHECK(*rig.transport->close_code(id) == CloseCode::token_expired);
    CHECK(static_cast<int>(CloseCode::token_expired) == 4001);
    CHECK(close_code_for(EndReason::token_expired) == CloseCode::token_expired);
    CHECK(to_string(EndReason::token_expired) == "token_expired");
    CHECK(ended == std::vector<EndReason>{EndReason::token_expired});
    CHECK(rig.gw->metrics().ended_total(EndReason::token_expired) == 1);
    CHECK(rig.gw->metrics().ended_total(EndReason::ttl_expired) == 0);
    CHECK(rig.gw->metrics().prometheus_text().find("wsgate_connections_ended_total{reason=\"token_expired\"} 1") !=
          std::string::npos);
}

TEST_CASE("a connection whose token expired cannot publish, even before the sweep", "[auth][expiry]") {
    Rig rig;
    const auto listener = rig.connect(rig.token("u-2", 3000));
    REQUIRE(types_of(rig.say(listener, {{"type", "subscribe"}, {"topic", "news"}})) ==
            std::vector<std::string>{"ack"});
    const auto id = rig.connect(rig.token("u-1", 60, {"post"}));
    // While the token is valid, the publish goes through.
    REQUIRE(types_of(rig.say(id, {{"type", "publish"}, {"topic", "news"}, {"data", "fresh"}})) ==
            std::vector<std::string>{"ack"});
    REQUIRE(rig.frames(listener).size() == 1);
    rig.clock->advance(62s);

    const auto ec = rig.gw->on_message(id, R"({"type":"publish","topic":"news","data":"stale"})");
    CHECK(ec == protocol_errc::unknown_connection);
    CHECK(rig.frames(listener).empty());
    CHECK_FALSE(rig.alive(id));
    REQUIRE(rig.transport->close_code(id));
    CHECK(*rig.transport->close_code(id) == CloseCode::token_expired);
    CHECK(rig.gw->metrics().ended_total(EndReason::token_expired) == 1);
}

TEST_CASE("token_expiring is sent once, the configured time before exp", "[auth][expiry]") {
    Rig rig;
    const auto id = rig.connect(rig.token("u-1", 300));
    rig.clock->advance(239s);
    CHECK(rig.gw->sweep().token_warnings == 0);
    CHECK(rig.frames(id).empty());

    rig.clock->advance(1s);  // exp − 60 s (the default warning)
    CHECK(rig.gw->sweep().token_warnings == 1);
    auto frames = rig.frames(id);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].at("type") == "token_expiring");
    CHECK(frames[0].at("expires_at") == format_iso8601(from_unix_seconds(t0 + 300)));

    rig.clock->advance(10s);
    CHECK(rig.gw->sweep().token_warnings == 0);
    CHECK(rig.frames(id).empty());
}

TEST_CASE("no token_expiring when the warning is off or the TTL ends the connection first", "[auth][expiry]") {
    GatewaySettings off;
    off.token_expiry_warning = 0s;
    Rig quiet{off};
    const auto a = quiet.connect(quiet.token("u-1", 300));
    quiet.clock->advance(290s);
    quiet.gw->sweep();
    CHECK(quiet.frames(a).empty());

    GatewaySettings short_ttl;
    short_ttl.ttl = 100s;
    Rig rig{short_ttl};
    const auto b = rig.connect(rig.token("u-1", 120));
    rig.clock->advance(70s);
    rig.gw->sweep();
    CHECK(rig.frames(b).empty());
    rig.clock->advance(30s);
    const auto report = rig.gw->sweep();
    CHECK(report.ttl_expired == 1);
    CHECK(report.token_expired == 0);
    CHECK(*rig.transport->close_code(b) == CloseCode::normal);
}

TEST_CASE("a refresh moves the deadline and drops subscriptions the new token does not permit", "[auth][expiry][refresh]") {
    Rig rig;
    const auto id = rig.connect(rig.token("u-1", 120));
    rig.say(id, {{"type", "subscribe"}, {"topic", "a:1"}});
    rig.say(id, {{"type", "subscribe"}, {"topic", "b:1"}});
    rig.clock->advance(100s);
    REQUIRE(rig.gw->sweep().token_warnings == 1);
    rig.frames(id);

    const auto frames = rig.say(id, {{"type", "refresh"}, {"token", rig.token("u-1", 600, {"read_a"})}});
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].at("type") == "unsubscribed");
    CHECK(frames[0].at("topic") == "b:1");
    CHECK(frames[0].at("reason") == "permission");
    CHECK(frames[1].at("type") == "ack");
    CHECK(frames[1].at("action") == "refresh");
    CHECK(frames[1].at("expires_at") == format_iso8601(from_unix_seconds(t0 + 700)));
    CHECK(rig.store->topics_of(id) == std::vector<std::string>{"a:1"});
    auto rec = rig.store->get(id);
    CHECK(rec->principal.permissions == std::vector<std::string>{"read_a"});
    CHECK(rec->expires_at == from_unix_seconds(t0 + 700));

    // Past the first token's exp: still connected; a publish to b:1 no longer reaches it.
    rig.clock->advance(30s);
    CHECK(rig.gw->sweep().token_expired == 0);
    CHECK(rig.alive(id));
    CHECK(rig.gw->publish(Envelope{"x"}.topic("b:1"), Audience::topic("b:1")).delivered == 0);

    // The new token gets its own warning, then ends the connection at its exp.
    rig.clock->advance(520s);  // t0 + 650 = new exp − 50 s
    CHECK(rig.gw->sweep().token_warnings == 1);
    rig.clock->advance(50s);
    CHECK(rig.gw->sweep().token_expired == 1);
    CHECK(*rig.transport->close_code(id) == CloseCode::token_expired);
}

TEST_CASE("a refresh with an expired, forged or missing token is refused and the old deadline stays",
          "[auth][expiry][refresh]") {
    Rig rig;
    const auto id = rig.connect(rig.token("u-1", 120));
    const auto expired = rig.token("u-1", -5);
    const auto forged = jwt::sign({{"sub", "u-1"}, {"deviceId", "phone"}, {"exp", t0 + 9999}},
                                  jwt::SigningKey::hmac(jwt::Algorithm::hs256, "not-the-session-secret-0123456789"));
    for (const auto& [token, reason] : std::vector<std::pair<std::string, std::string>>{
             {expired, "expired"}, {forged, "bad_signature"}, {"garbage", "malformed_token"}}) {
        INFO(reason);
        const auto frames = rig.say(id, {{"type", "refresh"}, {"token", token}});
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].at("type") == "error");
        CHECK(frames[0].at("status") == 401);
        CHECK(frames[0].at("error") == reason);
        CHECK(rig.alive(id));
    }
    auto missing = rig.say(id, {{"type", "refresh"}});
    REQUIRE(missing.size() == 1);
    CHECK(missing[0].at("status") == 400);
    CHECK(rig.store->get(id)->expires_at == from_unix_seconds(t0 + 120));

    rig.clock->advance(121s);
    CHECK(rig.gw->sweep().token_expired == 1);
    CHECK_FALSE(rig.alive(id));
}

TEST_CASE("a refresh with another principal's token is forbidden and ends the connection", "[auth][expiry][refresh]") {
    Rig rig;
    const auto other_user = rig.token("u-2", 600);
    const auto other_device = rig.token("u-1", 600, {"read_a"}, "laptop");
    const auto public_token = rig.issuer.issue({"phone", std::nullopt, std::nullopt})->token;
    for (const auto& token : {other_user, other_device, public_token}) {
        const auto id = rig.connect(rig.token("u-1", 120));
        const auto frames = rig.say(id, {{"type", "refresh"}, {"token", token}});
        REQUIRE_FALSE(frames.empty());
        CHECK(frames[0].at("type") == "error");
        CHECK(frames[0].at("status") == 403);
        CHECK_FALSE(rig.alive(id));
        REQUIRE(rig.transport->close_code(id));
        CHECK(*rig.transport->close_code(id) == CloseCode::policy_violation);
    }
    CHECK(rig.gw->metrics().ended_total(EndReason::policy) == 3);
}

TEST_CASE("a sliding TTL never reaches past the token's exp", "[auth][expiry]") {
    GatewaySettings s;
    s.extend_ttl_on_message = true;
    s.ttl = 10min;
    Rig rig{s};
    const auto id = rig.connect(rig.token("u-1", 300));
    rig.clock->advance(240s);
    rig.say(id, {{"type", "ping"}});
    CHECK(rig.store->get(id)->expires_at == from_unix_seconds(t0 + 300));
    rig.clock->advance(61s);
    CHECK(rig.gw->sweep().token_expired == 1);
}

TEST_CASE("a principal whose token already expired is not admitted", "[auth][expiry]") {
    Rig rig;
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = "u-1";
    p.expires_at = from_unix_seconds(t0 - 1);
    const auto r = rig.gw->on_connect(ConnectRequest{}, p);
    CHECK_FALSE(r.accepted);
    CHECK(r.status == 401);
    CHECK(r.reason == "expired");
}

TEST_CASE("a principal's token expiry survives its JSON form (durable stores, buses)", "[auth][expiry]") {
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = "u-1";
    p.expires_at = from_unix_seconds(t0 + 90);
    const auto back = json(p).get<Principal>();
    REQUIRE(back.expires_at);
    CHECK(*back.expires_at == *p.expires_at);
    CHECK_FALSE(json(Principal{}).get<Principal>().expires_at);
}
