// StreamTracker: positions from publications and subscribe acks, `since` on resubscribe,
// duplicates by offset (out-of-order arrivals are not duplicates), and received text that is
// not what it should be.
#include "catch.hpp"

#include <wsgate/client/stream_tracker.hpp>

#include <nlohmann/json.hpp>

#include <string>

using nlohmann::json;
using wsgate::StreamPosition;
using wsgate::client::StreamTracker;

namespace {

std::string publication(const std::string& topic, std::uint64_t offset, const std::string& epoch) {
    return json{{"type", "activity"}, {"topic", topic}, {"data", offset}, {"offset", offset}, {"epoch", epoch}}.dump();
}

std::string ack(const std::string& topic, std::uint64_t top, const std::string& epoch, json extra = json::object()) {
    json j{{"type", "ack"}, {"action", "subscribe"}, {"topic", topic}, {"position", {{"offset", top}, {"epoch", epoch}}}};
    j.update(extra);
    return j.dump();
}

}  // namespace

TEST_CASE("a first subscribe has no since; the ack's position and later publications set it", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    CHECK(json::parse(t.subscribe_frame("events")) == json{{"type", "subscribe"}, {"topic", "events"}});
    CHECK_FALSE(t.position("events"));

    auto r = t.inspect(ack("events", 7, "E1"));
    CHECK_FALSE(r.duplicate);
    CHECK_FALSE(r.recovery);  // a fresh subscription reports nothing
    CHECK(t.position("events") == StreamPosition{7, "E1"});

    CHECK_FALSE(t.inspect(publication("events", 8, "E1")).duplicate);
    CHECK_FALSE(t.inspect(publication("events", 9, "E1")).duplicate);
    CHECK(t.position("events") == StreamPosition{9, "E1"});
    CHECK(json::parse(t.subscribe_frame("events")) ==
          json{{"type", "subscribe"}, {"topic", "events"}, {"since", {{"offset", 9}, {"epoch", "E1"}}}});
}

TEST_CASE("a stream never published to is at {0, \"\"}; its first publications start from 0", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    CHECK_FALSE(t.inspect(ack("events", 0, "")).recovery);
    CHECK(t.position("events") == StreamPosition{0, ""});
    CHECK(json::parse(t.subscribe_frame("events"))["since"] == json{{"offset", 0}, {"epoch", ""}});

    CHECK_FALSE(t.inspect(publication("events", 2, "E")).duplicate);  // 1 still on its way
    CHECK(t.position("events") == StreamPosition{0, "E"});
    CHECK_FALSE(t.inspect(publication("events", 1, "E")).duplicate);
    CHECK(t.position("events") == StreamPosition{2, "E"});
    // An empty epoch names only offset 0.
    t.subscribe("other");
    t.inspect(ack("other", 5, ""));
    CHECK_FALSE(t.position("other"));
    CHECK_FALSE(t.inspect(publication("events", 3, "")).duplicate);
    CHECK(t.position("events") == StreamPosition{2, "E"});
}

TEST_CASE("a publication received twice in its epoch is a duplicate; out of order is not", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    t.inspect(ack("events", 10, "E1"));

    CHECK_FALSE(t.inspect(publication("events", 12, "E1")).duplicate);  // 11 still on its way
    CHECK(t.position("events") == StreamPosition{10, "E1"});           // since stays below the gap
    CHECK_FALSE(t.inspect(publication("events", 11, "E1")).duplicate);
    CHECK(t.position("events") == StreamPosition{12, "E1"});
    CHECK(t.inspect(publication("events", 12, "E1")).duplicate);
    CHECK(t.inspect(publication("events", 11, "E1")).duplicate);
    CHECK(t.inspect(publication("events", 3, "E1")).duplicate);  // before the subscription's position
    CHECK(t.duplicates() == 3);

    // The same offset in another epoch is a new publication: the stream restarted.
    CHECK_FALSE(t.inspect(publication("events", 12, "E2")).duplicate);
    CHECK(t.position("events") == StreamPosition{12, "E2"});
    CHECK(t.duplicates() == 3);
}

TEST_CASE("offsets further than the window below the highest count as seen", "[client][recovery]") {
    StreamTracker t{4};
    t.subscribe("events");
    t.inspect(ack("events", 0, "E"));
    CHECK_FALSE(t.inspect(publication("events", 1, "E")).duplicate);
    CHECK_FALSE(t.inspect(publication("events", 3, "E")).duplicate);  // 2 missing
    CHECK(t.position("events") == StreamPosition{1, "E"});
    CHECK_FALSE(t.inspect(publication("events", 8, "E")).duplicate);  // window 4: floor rises to 4
    CHECK(t.position("events") == StreamPosition{4, "E"});
    CHECK(t.inspect(publication("events", 2, "E")).duplicate);
    CHECK_FALSE(t.inspect(publication("events", 6, "E")).duplicate);
    CHECK_FALSE(t.inspect(publication("events", 5, "E")).duplicate);
    CHECK(t.position("events") == StreamPosition{6, "E"});
    CHECK_FALSE(t.inspect(publication("events", 7, "E")).duplicate);
    CHECK(t.position("events") == StreamPosition{8, "E"});
    CHECK_THROWS_AS(StreamTracker{0}, std::invalid_argument);
}

TEST_CASE("a recovering ack reports missed and keeps the position; the replay follows", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    t.inspect(ack("events", 0, "E1"));
    for (std::uint64_t o = 1; o <= 3; ++o) t.inspect(publication("events", o, "E1"));

    auto r = t.inspect(ack("events", 6, "E1", {{"recovered", true}, {"missed", 3}, {"resumedFrom", "since"}}));
    REQUIRE(r.recovery);
    CHECK(r.recovery->topic == "events");
    CHECK(r.recovery->recovered);
    CHECK(r.recovery->missed == 3);
    CHECK(r.recovery->reason.empty());
    CHECK(r.recovery->resumed_from == "since");
    CHECK(r.recovery->position == StreamPosition{6, "E1"});
    // Not adopted: 4..6 are still to come and must not look like duplicates.
    CHECK(t.position("events") == StreamPosition{3, "E1"});
    for (std::uint64_t o = 4; o <= 6; ++o) CHECK_FALSE(t.inspect(publication("events", o, "E1")).duplicate);
    CHECK(t.inspect(publication("events", 5, "E1")).duplicate);
    CHECK(t.position("events") == StreamPosition{6, "E1"});
}

TEST_CASE("a failed recovery reports the reason and moves to the ack's position", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    t.inspect(ack("events", 0, "E1"));
    t.inspect(publication("events", 1, "E1"));

    auto r = t.inspect(ack("events", 2, "E2", {{"recovered", false}, {"reason", "epoch_changed"}, {"missed", 0}}));
    REQUIRE(r.recovery);
    CHECK_FALSE(r.recovery->recovered);
    CHECK(r.recovery->reason == "epoch_changed");
    CHECK(t.position("events") == StreamPosition{2, "E2"});
    CHECK(t.inspect(publication("events", 2, "E2")).duplicate);  // part of what the host resynced
    CHECK_FALSE(t.inspect(publication("events", 3, "E2")).duplicate);

    // too_old in the same epoch: the position jumps forward.
    auto old = t.inspect(ack("events", 50, "E2", {{"recovered", false}, {"reason", "too_old"}}));
    REQUIRE(old.recovery);
    CHECK(old.recovery->reason == "too_old");
    CHECK(t.position("events") == StreamPosition{50, "E2"});
}

TEST_CASE("with_since adds since to subscribe frames of known topics only", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    t.subscribe("board");
    t.inspect(ack("events", 4, "E"));

    auto f = t.with_since(R"({"topic":"events","type":"subscribe","ref":7})");
    REQUIRE(f);
    auto j = json::parse(*f);
    CHECK(j["since"] == json{{"offset", 4}, {"epoch", "E"}});
    CHECK(j["ref"] == 7);
    CHECK_FALSE(t.with_since(R"({"type":"subscribe","topic":"board"})"));   // no position yet
    CHECK_FALSE(t.with_since(R"({"type":"subscribe","topic":"other"})"));   // not tracked
    CHECK_FALSE(t.with_since(R"({"type":"unsubscribe","topic":"events"})"));
    CHECK_FALSE(t.with_since(R"({"type":"subscribe","topic":"events","since":{"offset":1,"epoch":"E"}})"));
    CHECK_FALSE(t.with_since(R"({"type":"subscribe","topic":"events")"));  // not JSON
    CHECK_FALSE(t.with_since("subscribe"));

    t.unsubscribe("events");
    CHECK_FALSE(t.position("events"));
    CHECK_FALSE(t.with_since(R"({"type":"subscribe","topic":"events"})"));
    CHECK(t.topics() == std::vector<std::string>{"board"});
}

TEST_CASE("malformed frames are neither tracked nor duplicates and never throw", "[client][recovery]") {
    StreamTracker t;
    t.subscribe("events");
    t.inspect(ack("events", 2, "E"));
    const char* frames[] = {
        "",
        "not json \"offset\"",
        R"({"offset":3)",
        R"([{"topic":"events","offset":3,"epoch":"E"}])",
        R"({"topic":"events","offset":"3","epoch":"E"})",
        R"({"topic":"events","offset":-3,"epoch":"E"})",
        R"({"topic":"events","offset":3.5,"epoch":"E"})",
        R"({"topic":"events","offset":3,"epoch":5})",
        R"({"topic":"events","offset":3,"epoch":""})",
        R"({"topic":"events","offset":0,"epoch":"E"})",
        R"({"topic":7,"offset":3,"epoch":"E"})",
        R"({"topic":"events","offset":3})",
        R"({"type":"ack","action":"subscribe","topic":"events","recovered":"yes","position":{"offset":9,"epoch":"E"}})",
        R"({"type":"ack","action":"subscribe","topic":"events","recovered":false,"position":"E"})",
        R"({"type":"ack","action":"subscribe","topic":"events","recovered":false,"position":{"offset":-1,"epoch":"E"}})",
        R"({"type":"ack","action":7,"topic":"events","recovered":false})",
        "{\"topic\":\"events\",\"offset\":3,\"epoch\":\"\xff\xfe\"}",
    };
    for (const char* f : frames) {
        INFO(f);
        StreamTracker::Inspection r;
        REQUIRE_NOTHROW(r = t.inspect(f));
        CHECK_FALSE(r.duplicate);
    }
    // None of them moved the position.
    CHECK(t.position("events") == StreamPosition{2, "E"});
    CHECK(t.duplicates() == 0);
    // A publication on a topic that is not subscribed is passed on, untracked.
    CHECK_FALSE(t.inspect(publication("other", 1, "E")).duplicate);
    CHECK_FALSE(t.inspect(publication("other", 1, "E")).duplicate);
    CHECK_FALSE(t.position("other"));
    // Invalid UTF-8 in a host's topic is replaced, not thrown on.
    CHECK_NOTHROW(t.subscribe_frame("bad\xff"));
}
