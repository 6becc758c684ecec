// End to end behind a local @connections endpoint: API Gateway events → Gateway → signed posts,
// and the 1,000-connection fan-out with 10 % gone.
#include "catch.hpp"
#include "fake_server.hpp"

#include <wsgate/aws.hpp>
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>

#ifdef WSGATE_TEST_SQLITE
#include "temp_dir.hpp"
#include <wsgate/sqlite/sqlite_store.hpp>
#endif

#include <fstream>
#include <optional>
#include <set>
#include <sstream>

using namespace wsgate;
using namespace wsgate::aws;
using nlohmann::json;

namespace {

constexpr const char* secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

std::string event_file(const std::string& name) {
    std::ifstream in{std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/data/events/" + name, std::ios::binary};
    REQUIRE(in.good());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::shared_ptr<ConnectionsTransport> transport_for(const test::FakeConnectionsServer& server) {
    ConnectionsSettings s;
    s.endpoint = server.endpoint();
    s.region = "us-east-1";
    s.credentials = Credentials{"AKIDEXAMPLE", secret, {}};
    s.retry_base = std::chrono::milliseconds{5};
    return std::make_shared<ConnectionsTransport>(s);
}

GatewaySettings api_gateway_settings() {
    GatewaySettings g;
    g.local_delivery_only = false;  // any process reaches every connection through @connections
    g.router.topic_rules.push_back({"leaderboard:*", "read_leaderboard", ""});
    g.router.topic_rules.push_back({"entity:*", "", "", /*anonymous_read=*/true});
    return g;
}

class DenyAll final : public Authorizer {
public:
    AuthDecision authorize(const ConnectRequest&) override { return AuthDecision::deny(401, "missing_token"); }
};

}  // namespace

TEST_CASE("WebSocket events drive the Gateway behind @connections", "[aws][gateway][integration]") {
    test::FakeConnectionsServer server{secret};
    const ConnectionId id = "RyhQHdzxIAMCKjA=";
    server.add_connections({id});
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto transport = transport_for(server);
    Gateway gw{api_gateway_settings(), store, transport, std::make_shared<DenyAll>()};
    WebSocketEventHandler handler{gw};

    // $connect with the authorizer's context: the principal is taken from it, not re-authorized.
    auto r = handler.handle(event_file("connect_authorized.json"));
    CHECK(r.status_code == 200);
    auto rec = store->get(id);
    REQUIRE(rec);
    CHECK(rec->principal.kind == PrincipalKind::public_device);
    CHECK(rec->principal.device_id == "device-1700000000000-k3j9x2m1q");
    CHECK(rec->principal.has_permission("read_leaderboard"));
    CHECK(rec->source_ip == "203.0.113.10");

    // $connect without a context goes through the Gateway's Authorizer (which denies here).
    r = handler.handle(event_file("connect_plain.json"));
    CHECK(r.status_code == 401);
    CHECK(json::parse(r.body).at("error") == "missing_token");
    CHECK_FALSE(store->get("Ryh_aeJ8IAMCJMw="));

    // MESSAGE: subscribe (plain), then ping (base64): the replies are signed POSTs.
    r = handler.handle(event_file("message.json"));
    CHECK(r.status_code == 200);
    CHECK(store->topics_of(id) == std::vector<std::string>{"leaderboard:42"});
    r = handler.handle(event_file("message_base64.json"));
    CHECK(r.status_code == 200);
    auto posts = server.posts().at(id);
    REQUIRE(posts.size() == 2);
    CHECK(json::parse(posts[0].get<std::string>()).at("type") == "ack");
    CHECK(json::parse(posts[1].get<std::string>()).at("type") == "pong");

    // A broadcast to the topic reaches the connection.
    const auto report = gw.publish(Envelope{"leaderboard_update"}.topic("leaderboard:42").data({{"top", 1}}),
                                   Audience::topic("leaderboard:42"));
    CHECK(report.delivered == 1);
    CHECK(server.posts().at(id).size() == 3);

    // Malformed events: a 400 response, state untouched.
    for (const char* bad : {"", "{}", "[1,2]", R"({"requestContext":{"eventType":"MESSAGE"}})"}) {
        INFO(bad);
        CHECK(handler.handle(std::string_view{bad}).status_code == 400);
    }
    CHECK(store->count() == 1);

    // A message for an unknown connection is refused without a post.
    auto stray = json::parse(event_file("message.json"));
    stray["requestContext"]["connectionId"] = "not-connected";
    CHECK(handler.handle(stray.dump()).status_code == 410);

    // $disconnect removes the record.
    r = handler.handle(event_file("disconnect.json"));
    CHECK(r.status_code == 200);
    CHECK_FALSE(store->get(id));
    CHECK(server.stats().at("bad_signatures") == 0);
}

TEST_CASE("$connect echoes the offered subprotocol name, never the token, and refuses a bare token",
          "[aws][gateway][subprotocol]") {
    test::FakeConnectionsServer server{secret};
    auto store = std::make_shared<InMemoryConnectionStore>();
    Gateway gw{api_gateway_settings(), store, transport_for(server), std::make_shared<DenyAll>()};
    WebSocketEventHandler handler{gw};

    auto offered = json::parse(event_file("connect_authorized.json"));
    offered["headers"]["Sec-WebSocket-Protocol"] = "wsgate, eyJhbGciOiJIUzI1NiJ9.e30.sig";
    auto r = handler.handle(offered.dump());
    CHECK(r.status_code == 200);
    REQUIRE(r.headers.count("Sec-WebSocket-Protocol") == 1);
    CHECK(r.headers.at("Sec-WebSocket-Protocol") == "wsgate");
    CHECK(r.to_json().at("headers").at("Sec-WebSocket-Protocol") == "wsgate");
    CHECK(store->count() == 1);

    // No subprotocol offered: no header, and none in the JSON.
    auto plain = json::parse(event_file("connect_authorized.json"));
    plain["requestContext"]["connectionId"] = "second-connection=";
    r = handler.handle(plain.dump());
    CHECK(r.status_code == 200);
    CHECK(r.headers.empty());
    CHECK_FALSE(r.to_json().contains("headers"));

    // A bare token names no protocol that could be echoed: refused before it is registered.
    auto bare = json::parse(event_file("connect_authorized.json"));
    bare["requestContext"]["connectionId"] = "third-connection=";
    bare["headers"]["Sec-WebSocket-Protocol"] = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
    r = handler.handle(bare.dump());
    CHECK(r.status_code == 400);
    CHECK(json::parse(r.body).at("error") == "unsupported_subprotocol");
    CHECK_FALSE(store->get("third-connection="));
    CHECK(store->count() == 2);
}

TEST_CASE("fan-out to 1,000 connections, 10 % gone, removes exactly those", "[aws][gateway][integration]") {
    test::FakeConnectionsServer server{secret};
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto transport = transport_for(server);
    Gateway gw{api_gateway_settings(), store, transport, std::make_shared<AnonymousAuthorizer>()};

    std::vector<ConnectionId> live;
    std::set<ConnectionId> gone;
    for (int i = 0; i < 1000; ++i) {
        ConnectRequest req;
        req.connection_id = "Conn" + std::to_string(i) + "xYz=";
        Principal p;
        p.kind = PrincipalKind::user;
        p.user_id = "user-" + std::to_string(i);
        REQUIRE(gw.on_connect(req, p).accepted);
        if (i % 10 == 7) gone.insert(req.connection_id);
        else live.push_back(req.connection_id);
    }
    server.add_connections(live);  // the other 100 have left API Gateway without a $disconnect
    REQUIRE(store->count() == 1000);

    const auto report = gw.publish(Envelope{"teams.locked"}.data({{"teams", 8}}), Audience::everyone());
    CHECK(report.targets == 1000);
    CHECK(report.delivered == 900);
    CHECK(report.gone_removed == 100);
    CHECK(report.failed == 0);
    CHECK(store->count() == 900);
    for (const auto& id : gone) CHECK_FALSE(store->get(id));
    for (const auto& id : live) CHECK(store->get(id));

    const auto posts = server.posts();
    CHECK(posts.size() == 900);
    for (const auto& id : live) {
        REQUIRE(posts.contains(id));
        REQUIRE(posts.at(id).size() == 1);
        CHECK(json::parse(posts.at(id)[0].get<std::string>()).at("type") == "teams.locked");
    }
    const auto stats = server.stats();
    CHECK(stats.at("bad_signatures") == 0);
    CHECK(stats.at("gone") == 100);
    CHECK(gw.metrics().gone_cleanups.load() == 100);

    // A second publish touches only the survivors.
    const auto again = gw.publish(Envelope{"workflow.started"}, Audience::everyone());
    CHECK(again.targets == 900);
    CHECK(again.delivered == 900);
    CHECK(again.gone_removed == 0);
}

TEST_CASE("the reaper closes expired connections with a signed DELETE", "[aws][gateway][integration]") {
    test::FakeConnectionsServer server{secret};
    server.add_connections({"idle-1=", "kicked-1=", "fresh-1="});
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto clock = std::make_shared<ManualClock>();
    Gateway gw{api_gateway_settings(), store, transport_for(server), std::make_shared<AnonymousAuthorizer>(), clock};
    for (const char* id : {"idle-1=", "kicked-1="}) {
        ConnectRequest req;
        req.connection_id = id;
        REQUIRE(gw.on_connect(req).accepted);
    }
    CHECK(gw.end("kicked-1=", EndReason::kicked));
    clock->advance(std::chrono::minutes{11});  // past the 10-minute idle timeout
    ConnectRequest fresh;
    fresh.connection_id = "fresh-1=";
    REQUIRE(gw.on_connect(fresh).accepted);
    const auto swept = gw.sweep();
    CHECK(swept.idle == 1);
    CHECK_FALSE(store->get("idle-1="));
    CHECK(store->get("fresh-1="));
    const auto stats = server.stats();
    CHECK(stats.at("deleted") == json{"kicked-1=", "idle-1="});
    CHECK(stats.at("bad_signatures") == 0);
}

TEST_CASE("a token's expiry ends a connection behind API Gateway with a signed DELETE", "[aws][gateway][expiry]") {
    test::FakeConnectionsServer server{secret};
    const ConnectionId id = "RyhQHdzxIAMCKjA=";
    server.add_connections({id, "other-1="});
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    // The $connect Lambda and the scheduled sweeper are different processes sharing the store.
    Gateway connector{api_gateway_settings(), store, transport_for(server), std::make_shared<DenyAll>(), clock};
    Gateway sweeper{api_gateway_settings(), store, transport_for(server), std::make_shared<DenyAll>(), clock};
    WebSocketEventHandler handler{connector};

    // The upstream authorizer put the token's exp (2 minutes away) into the context.
    auto event = json::parse(event_file("connect_authorized.json"));
    event["requestContext"]["authorizer"]["expiresAt"] = "1700000120";
    REQUIRE(handler.handle(event.dump()).status_code == 200);
    ConnectRequest other;
    other.connection_id = "other-1=";
    Principal long_lived;
    long_lived.kind = PrincipalKind::public_device;
    long_lived.device_id = "board-2";
    long_lived.expires_at = from_unix_seconds(1'700'000'000 + 3600 * 24);
    REQUIRE(connector.on_connect(other, long_lived).accepted);
    auto rec = store->get(id);
    REQUIRE(rec);
    CHECK(rec->expires_at == from_unix_seconds(1'700'000'120));

    clock->advance(std::chrono::seconds{119});
    CHECK(sweeper.sweep().token_expired == 0);
    CHECK(server.stats().at("deleted") == json::array());

    clock->advance(std::chrono::seconds{2});
    const auto swept = sweeper.sweep();
    CHECK(swept.token_expired == 1);
    CHECK(swept.ttl_expired == 0);
    CHECK_FALSE(store->get(id));
    CHECK(store->get("other-1="));
    CHECK(sweeper.metrics().ended_total(EndReason::token_expired) == 1);
    const auto stats = server.stats();
    CHECK(stats.at("deleted") == json{id});
    CHECK(stats.at("bad_signatures") == 0);

    // A cached authorizer context whose token has run out is refused at $connect.
    event["requestContext"]["connectionId"] = "late-1=";
    CHECK(handler.handle(event.dump()).status_code == 401);
    CHECK_FALSE(store->get("late-1="));
}

TEST_CASE("a DynamoDB stream event feeds the change-stream processor", "[aws][dynamodb][gateway][integration]") {
    test::FakeConnectionsServer server{secret};
    server.add_connections({"watcher="});
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto clock = std::make_shared<ManualClock>();
    Gateway gw{api_gateway_settings(), store, transport_for(server), std::make_shared<AnonymousAuthorizer>(), clock};
    ConnectRequest req;
    req.connection_id = "watcher=";
    REQUIRE(gw.on_connect(req).accepted);
    REQUIRE_FALSE(gw.on_message("watcher=", R"({"type":"subscribe","topic":"entity:stream:stream-001"})"));

    ChangeStreamSettings cs;
    cs.coalesce = false;  // keep INSERT, MODIFY and REMOVE of the one item as three updates
    ChangeStreamProcessor processor{clock, [&](const Envelope& e, const Audience& a) { gw.publish(e, a); }, cs};
    const auto parsed = parse_dynamodb_stream_event(event_file("dynamodb_stream.json"));
    REQUIRE(parsed.records.size() == 3);
    for (const auto& r : parsed.records) {
        std::error_code ec;
        ChangeRecordFormat format;
        format.default_entity_type = "stream";  // for records whose images lack `entity_type`
        auto change = parse_change_record(r.to_change_json(), ec, format);
        REQUIRE(change);
        CHECK(change->entity_type == "stream");
        CHECK(change->sequence_number == r.sequence_number);
        CHECK(to_unix_seconds(change->timestamp) == *r.approximate_creation_time);
        CHECK_FALSE(processor.push(std::move(*change)));
    }
    processor.flush();

    const auto posts = server.posts().at("watcher=");
    REQUIRE(posts.size() == 2);  // the subscribe ack, then one METRICS_UPDATE batch
    const auto update = json::parse(posts[1].get<std::string>());
    CHECK(update.at("type") == "METRICS_UPDATE");
    CHECK(update.at("topic") == "entity:stream:stream-001");
    const auto& updates = update.at("updates");
    REQUIRE(updates.size() == 3);
    CHECK(updates[0].at("data").at("value") == 1532);
    CHECK(updates[1].at("data").at("value") == 1600);
}

#ifdef WSGATE_TEST_SQLITE
TEST_CASE("behind API Gateway a reconnecting client recovers what it missed from the shared store",
          "[aws][gateway][delivery]") {
    test::FakeConnectionsServer server{secret};
    const ConnectionId first = "RyhQHdzxIAMCKjA=";
    const ConnectionId second = "SecondConnAAAAA=";
    server.add_connections({first, second});
    test::TempDir dir{"wsgate-aws-delivery"};
    const std::string db = dir.file("shared.db");
    // Two Lambda processes: each has its own Gateway and store handle on one shared database.
    auto settings = api_gateway_settings();
    settings.router.topic_rules[0].history_size = 100;
    Gateway publisher{settings, std::make_shared<SqliteConnectionStore>(db), transport_for(server),
                      std::make_shared<DenyAll>()};
    Gateway other{settings, std::make_shared<SqliteConnectionStore>(db), transport_for(server),
                  std::make_shared<DenyAll>()};
    WebSocketEventHandler in_publisher{publisher};
    WebSocketEventHandler in_other{other};

    auto event = [&](const std::string& file, const ConnectionId& id, std::optional<json> body = {}) {
        auto e = json::parse(event_file(file));
        e["requestContext"]["connectionId"] = id;
        if (body) e["body"] = body->dump();
        return e.dump();
    };
    auto frames = [&](const ConnectionId& id) {
        std::vector<json> out;
        auto posts = server.posts();
        if (posts.contains(id))
            for (const auto& p : posts.at(id)) out.push_back(json::parse(p.get<std::string>()));
        return out;
    };

    REQUIRE(in_publisher.handle(event("connect_authorized.json", first)).status_code == 200);
    REQUIRE(in_publisher.handle(event("message.json", first)).status_code == 200);
    for (int i = 0; i < 3; ++i)
        publisher.publish(Envelope{"leaderboard_update"}.data(i), Audience::topic("leaderboard:42"));
    auto got = frames(first);
    REQUIRE(got.size() == 4);  // the ack and three publications
    CHECK(got[0]["position"]["offset"] == 0);
    const json last{{"offset", got[1]["offset"]}, {"epoch", got[1]["epoch"]}};  // it kept only the first
    REQUIRE(in_publisher.handle(event("disconnect.json", first)).status_code == 200);

    // The client reconnects; its subscribe lands on the other process, which replays from the store.
    publisher.publish(Envelope{"leaderboard_update"}.data(3), Audience::topic("leaderboard:42"));
    REQUIRE(in_other.handle(event("connect_authorized.json", second)).status_code == 200);
    REQUIRE(in_other
                .handle(event("message.json", second,
                              json{{"type", "subscribe"}, {"topic", "leaderboard:42"}, {"since", last}, {"ref", "r1"}}))
                .status_code == 200);
    auto replay = frames(second);
    REQUIRE(replay.size() == 4);
    CHECK(replay[0]["type"] == "ack");
    CHECK(replay[0]["ref"] == "r1");
    CHECK(replay[0]["recovered"] == true);
    CHECK(replay[0]["missed"] == 3);
    for (int i = 1; i <= 3; ++i) {
        CHECK(replay[i]["offset"] == 1 + i);
        CHECK(replay[i]["data"] == i);
        CHECK(replay[i]["epoch"] == last["epoch"]);
    }
    // Live again from either process, with the next offset.
    publisher.publish(Envelope{"leaderboard_update"}.data(4), Audience::topic("leaderboard:42"));
    auto live = frames(second);
    REQUIRE(live.size() == 5);
    CHECK(live[4]["offset"] == 5);
    CHECK(server.stats().at("bad_signatures") == 0);
}
#endif
