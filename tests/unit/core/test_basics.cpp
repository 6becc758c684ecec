#include "catch.hpp"

#include <wsgate/detail/error_category.hpp>
#include <wsgate/detail/text.hpp>
#include <wsgate/wsgate.hpp>

#include <set>

using namespace wsgate;

TEST_CASE("ISO-8601 timestamps are UTC with milliseconds", "[basics]") {
    CHECK(format_iso8601(from_unix_ms(0)) == "1970-01-01T00:00:00.000Z");
    CHECK(format_iso8601(from_unix_ms(1'704'110'400'123)) == "2024-01-01T12:00:00.123Z");
    CHECK(format_iso8601(from_unix_ms(-1)) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("ManualClock moves only when told", "[basics][clock]") {
    ManualClock c{from_unix_seconds(100)};
    CHECK(to_unix_seconds(c.now()) == 100);
    c.advance(std::chrono::seconds{5});
    CHECK(to_unix_ms(c.now()) == 105'000);
    c.set(from_unix_seconds(7));
    CHECK(to_unix_seconds(c.now()) == 7);
}

TEST_CASE("connection ids carry 128 random bits, base64url", "[basics][id]") {
    std::set<std::string> seen;
    for (int i = 0; i < 2000; ++i) {
        auto id = make_connection_id();
        REQUIRE(id.size() == 22);  // ceil(128 / 6)
        for (char c : id) REQUIRE((std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'));
        seen.insert(id);
    }
    CHECK(seen.size() == 2000);
    CHECK(random_token(1).size() == 2);
    CHECK(random_token(2).size() == 3);
    CHECK(random_token(0).empty());
}

TEST_CASE("query strings decode percent escapes and plus", "[basics][query]") {
    auto q = parse_query_string("?token=a%2Bb%3D&name=J+Doe&empty=&flag&bad=%zz&x=1&x=2");
    CHECK(q["token"] == "a+b=");
    CHECK(q["name"] == "J Doe");
    CHECK(q["empty"].empty());
    CHECK(q.count("flag") == 1);
    CHECK(q["bad"] == "%zz");
    CHECK(q["x"] == "2");
    CHECK(parse_query_string("").empty());
    CHECK(percent_decode("%4", false) == "%4");
    CHECK(percent_decode("a+b", false) == "a+b");
}

TEST_CASE("envelopes serialize once with type, timestamp, id and extra fields", "[basics][envelope]") {
    auto e = Envelope{"teams.locked"}.topic("tournament:7").data({{"teams", 8}}).field("tournamentId", "7");
    auto j = e.to_json(from_unix_ms(1'704'110'400'000));
    CHECK(j["type"] == "teams.locked");
    CHECK(j["timestamp"] == "2024-01-01T12:00:00.000Z");
    CHECK(j["topic"] == "tournament:7");
    CHECK(j["data"]["teams"] == 8);
    CHECK(j["tournamentId"] == "7");
    CHECK(j["id"].get<std::string>().size() >= 16);
    CHECK_FALSE(j.contains("offset"));
    CHECK_THROWS_AS(Envelope{"x"}.field("type", 1), std::invalid_argument);
    CHECK_THROWS_AS(Envelope{"x"}.field("id", 1), std::invalid_argument);

    Envelope pos{"tick"};
    pos.position(42, "e1");
    auto pj = pos.to_json(from_unix_ms(0));
    CHECK(pj["offset"] == 42);
    CHECK(pj["epoch"] == "e1");

    auto payload = e.serialize(from_unix_ms(0));
    CHECK(nlohmann::json::parse(*payload)["type"] == "teams.locked");
    CHECK(Envelope{"a"}.id() != Envelope{"a"}.id());
}

TEST_CASE("audiences round-trip through JSON for the bus", "[basics][audience]") {
    auto a = Audience::users({"u1", "u2"}).except_device("d1").requiring("read_events");
    Audience b = nlohmann::json(a).get<Audience>();
    CHECK(b.kind == Audience::Kind::users);
    CHECK(b.user_ids == std::vector<std::string>{"u1", "u2"});
    CHECK(b.excluded_device == "d1");
    CHECK(b.required_permission == "read_events");

    BusMessage m{"node-a", Audience::topic("t"), R"({"type":"x"})"};
    BusMessage back;
    REQUIRE(decode_bus_message(encode_bus_message(m), back));
    CHECK(back.origin_node == "node-a");
    CHECK(back.audience.topic_name == "t");
    CHECK(back.payload == m.payload);
    BusMessage untouched;
    untouched.origin_node = "keep";
    CHECK_FALSE(decode_bus_message("not json", untouched));
    CHECK_FALSE(decode_bus_message(R"({"origin":1})", untouched));
    CHECK_FALSE(decode_bus_message(R"({"origin":"a","audience":{"kind":"martians"},"payload":""})", untouched));
    CHECK(untouched.origin_node == "keep");
}

TEST_CASE("principals and records round-trip through JSON", "[basics][json]") {
    ConnectionRecord r;
    r.id = "c1";
    r.principal.kind = PrincipalKind::public_device;
    r.principal.device_id = "dev";
    r.principal.permissions = {"read_leaderboard"};
    r.principal.issued_at = from_unix_seconds(1000);
    r.principal.claims = {{"tier", "gold"}};
    r.connected_at = from_unix_ms(5);
    r.expires_at = from_unix_ms(10);
    r.source_ip = "10.0.0.1";
    r.attributes["k"] = "v";
    auto back = nlohmann::json(r).get<ConnectionRecord>();
    CHECK(back.id == "c1");
    CHECK(back.principal.kind == PrincipalKind::public_device);
    CHECK(back.principal.permissions == std::vector<std::string>{"read_leaderboard"});
    CHECK(back.principal.issued_at == from_unix_seconds(1000));
    CHECK(back.principal.claims["tier"] == "gold");
    CHECK(back.expires_at == from_unix_ms(10));
    CHECK(back.attributes.at("k") == "v");
}

TEST_CASE("error codes have categories and statuses", "[basics][error]") {
    std::error_code ec = protocol_errc::rate_limited;
    CHECK(ec.category().name() == std::string{"wsgate.protocol"});
    CHECK(ec.message() == "rate limit exceeded");
    CHECK(status_of(protocol_errc::rate_limited) == 429);
    CHECK(status_of(protocol_errc::too_large) == 413);
    CHECK(status_of(protocol_errc::forbidden) == 403);
    CHECK(status_of(protocol_errc::malformed_json) == 400);
    CHECK(std::error_code{store_errc::busy}.message() == "store is locked");
    CHECK(std::error_code{transport_errc::gone}.category().name() == std::string{"wsgate.transport"});
    CHECK(to_string(SendStatus::backpressure) == "backpressure");
    CHECK(status_of(protocol_errc::too_many_subscriptions) == 429);
    CHECK(std::error_code{protocol_errc::too_many_subscriptions}.message() == "too many subscriptions");
    // status_of(error_code): a protocol error's status; other categories are server errors.
    CHECK(status_of(std::error_code{protocol_errc::forbidden}) == 403);
    CHECK(status_of(std::error_code{store_errc::busy}) == 500);
    CHECK(status_of(std::error_code{}) == 200);
    // One category instance per enum: codes compare by category, and values outside the enum
    // still have a message.
    CHECK(std::error_code{store_errc::busy} != std::error_code{static_cast<int>(store_errc::busy), protocol_category()});
    CHECK(&store_category() == &std::error_code{store_errc::corrupt}.category());
    CHECK(std::error_code(999, protocol_category()).message() == "unknown protocol error");
}

namespace {
enum class demo_errc { first = 1, second };
const char* describe_demo(demo_errc e) noexcept { return e == demo_errc::first ? "the first" : "something else"; }
}  // namespace

TEST_CASE("the generic error category names its enum and describes each value", "[basics][error]") {
    const auto& cat = detail::error_category_of<demo_errc, &describe_demo>("demo");
    CHECK(cat.name() == std::string{"demo"});
    CHECK(cat.message(1) == "the first");
    CHECK(cat.message(2) == "something else");
    CHECK(&cat == &detail::error_category_of<demo_errc, &describe_demo>("ignored after the first call"));
    CHECK(cat.name() == std::string{"demo"});
}

TEST_CASE("ASCII text helpers: lower, iequals, trim", "[basics][text]") {
    CHECK(detail::to_lower("Sec-WebSocket-Protocol") == "sec-websocket-protocol");
    CHECK(detail::to_lower("") == "");
    // Bytes outside A-Z are left alone (UTF-8 stays intact, no locale).
    CHECK(detail::to_lower("\xC3\x89T\xC3\x89") == "\xC3\x89t\xC3\x89");
    CHECK(detail::ascii_lower('@') == '@');
    CHECK(detail::ascii_lower('[') == '[');
    CHECK(detail::iequals("Bearer", "bEARER"));
    CHECK_FALSE(detail::iequals("bearer", "bearer "));
    CHECK_FALSE(detail::iequals("bearer", "beaker"));
    CHECK_FALSE(detail::iequals("@", "`"));  // 0x40 and 0x60 differ by the case bit but are not letters
    CHECK(detail::trim(" \t token\t ") == "token");
    CHECK(detail::trim(" \t ").empty());
    CHECK(detail::trim("a b") == "a b");
    CHECK(detail::trim("\nx\n") == "\nx\n");  // only spaces and tabs (HTTP whitespace)
    STATIC_REQUIRE(detail::iequals("ABC", "abc"));
    STATIC_REQUIRE(detail::trim("  x ") == "x");
}

TEST_CASE("permissions: exact names and the wildcard", "[basics][principal]") {
    Principal p;
    p.permissions = {"read_events"};
    CHECK(p.has_permission("read_events"));
    CHECK_FALSE(p.has_permission("read_leaderboard"));
    CHECK(p.has_permission(""));
    p.permissions = {"*"};
    CHECK(p.has_permission("anything"));
}
