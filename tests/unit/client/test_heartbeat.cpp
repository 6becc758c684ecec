// Heartbeat: ping cadence, pong timeout, pause/resume.
#include "catch.hpp"

#include <wsgate/client/heartbeat.hpp>

using namespace std::chrono_literals;
using Due = wsgate::client::Heartbeat::Due;
using wsgate::client::Heartbeat;

TEST_CASE("a ping every 30 s; a pong later than 5 s times out", "[client][heartbeat]") {
    const wsgate::TimePoint t0{std::chrono::seconds{1'700'000'000}};
    Heartbeat h;
    CHECK(h.tick(t0) == Due::nothing);  // not started
    CHECK_FALSE(h.next_deadline());
    h.start(t0);
    CHECK(h.running());
    CHECK(h.next_deadline() == t0 + 30s);
    CHECK(h.tick(t0 + 29999ms) == Due::nothing);
    CHECK(h.tick(t0 + 30s) == Due::send_ping);
    CHECK(h.awaiting_pong());
    CHECK(h.next_deadline() == t0 + 35s);
    CHECK(h.tick(t0 + 30s) == Due::nothing);  // one ping per interval
    CHECK(h.tick(t0 + 34999ms) == Due::nothing);
    CHECK(h.tick(t0 + 35s) == Due::timed_out);
    CHECK_FALSE(h.running());
    CHECK(h.tick(t0 + 36s) == Due::nothing);  // reported once
}

TEST_CASE("a pong clears the wait and records the round trip", "[client][heartbeat]") {
    const wsgate::TimePoint t0{};
    Heartbeat h;
    h.start(t0);
    h.on_pong(t0 + 1s);  // unsolicited: ignored
    CHECK_FALSE(h.last_round_trip());
    REQUIRE(h.tick(t0 + 30s) == Due::send_ping);
    h.on_pong(t0 + 30s + 120ms);
    CHECK_FALSE(h.awaiting_pong());
    CHECK(h.last_round_trip() == wsgate::Duration{120});
    CHECK(h.tick(t0 + 40s) == Due::nothing);
    CHECK(h.next_deadline() == t0 + 60s);
    CHECK(h.tick(t0 + 60s) == Due::send_ping);
    h.on_pong(t0 + 60s);
    CHECK(h.tick(t0 + 90s) == Due::send_ping);
}

TEST_CASE("pause stops pings and timeouts; resume pings at once", "[client][heartbeat]") {
    const wsgate::TimePoint t0{};
    Heartbeat h;
    h.start(t0);
    REQUIRE(h.tick(t0 + 30s) == Due::send_ping);
    h.pause();
    CHECK(h.paused());
    CHECK_FALSE(h.next_deadline());
    CHECK(h.tick(t0 + 10min) == Due::nothing);  // the pending pong does not time out while paused
    h.resume(t0 + 10min);
    CHECK_FALSE(h.paused());
    CHECK_FALSE(h.awaiting_pong());
    CHECK(h.tick(t0 + 10min) == Due::send_ping);
    CHECK(h.tick(t0 + 10min + 5s) == Due::timed_out);

    // pause/resume on a stopped heartbeat do nothing.
    Heartbeat s;
    s.pause();
    CHECK_FALSE(s.paused());
    s.resume(t0);
    CHECK(s.tick(t0 + 1h) == Due::nothing);
}

TEST_CASE("stop and restart", "[client][heartbeat]") {
    const wsgate::TimePoint t0{};
    Heartbeat h;
    h.start(t0);
    REQUIRE(h.tick(t0 + 30s) == Due::send_ping);
    h.stop();
    CHECK(h.tick(t0 + 1h) == Due::nothing);
    h.start(t0 + 1h);
    CHECK_FALSE(h.awaiting_pong());
    CHECK(h.tick(t0 + 1h + 30s) == Due::send_ping);
}

TEST_CASE("a timeout longer than the interval still times out", "[client][heartbeat]") {
    const wsgate::TimePoint t0{};
    Heartbeat h{{10s, 15s}};
    h.start(t0);
    REQUIRE(h.tick(t0 + 10s) == Due::send_ping);
    CHECK(h.tick(t0 + 20s) == Due::nothing);  // no second ping while one is unanswered
    CHECK(h.tick(t0 + 25s) == Due::timed_out);
}

TEST_CASE("heartbeat settings must be positive", "[client][heartbeat]") {
    CHECK_THROWS_AS(Heartbeat({0s, 5s}), std::invalid_argument);
    CHECK_THROWS_AS(Heartbeat({30s, -1s}), std::invalid_argument);
}
