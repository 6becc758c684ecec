// ClientStateMachine after the attempt cap and under the host's control: slow probes that bring
// it back by itself, retry(), abandon(), require_ready/ready(), and the status() snapshot.
#include "catch.hpp"

#include <wsgate/client.hpp>

#include "state_machine_harness.hpp"

using namespace std::chrono_literals;
using wsgate_test::Harness;
using wsgate::client::Action;
using wsgate::client::Actions;
using wsgate::client::ClientSettings;
using wsgate::client::ClientStateMachine;
using State = wsgate::client::ConnectionState;

namespace {

ClientSettings capped(std::size_t attempts, wsgate::Duration probe) {
    ClientSettings s;
    s.reconnect.max_attempts = attempts;
    s.probe_interval = probe;
    return s;
}

}  // namespace

TEST_CASE("after the cap the machine probes every probe_interval and is live again once a probe opens",
          "[client][state][probe]") {
    Harness h{capped(2, 60s)};
    h.connected();
    h.m.on_close(1006);
    REQUIRE(h.fire_reconnect() == Actions{Action::open_socket()});
    h.m.on_close(1006);
    REQUIRE(h.fire_reconnect() == Actions{Action::open_socket()});
    h.jitter = 300;  // the probe gets a jitter too
    CHECK(h.m.on_close(1006).empty());  // already polling

    CHECK(h.m.state() == State::disconnected);
    CHECK(h.m.gave_up());
    CHECK(h.m.should_poll());
    const auto s = h.m.status();
    CHECK(s.gave_up);
    CHECK(s.probing);
    CHECK(s.polling);
    CHECK(s.attempt == 2);
    CHECK(s.max_attempts == 2);
    CHECK(s.next_attempt_at == h.clock->now() + 60s + 300ms);
    CHECK(s.next_attempt_in == wsgate::Duration{60s + 300ms});
    CHECK(h.m.next_deadline() == h.clock->now() + 60s + 300ms);

    h.clock->advance(60s);
    CHECK(h.m.tick().empty());
    h.clock->advance(300ms);
    CHECK(h.m.tick() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);

    // A failed probe waits for the next one, still given up and polling.
    CHECK(h.m.on_close(1006).empty());
    CHECK(h.m.state() == State::disconnected);
    CHECK(h.m.status().probing);
    CHECK(h.m.reconnect_at() == h.clock->now() + 60s + 300ms);

    // A probe that opens is an ordinary connection with a fresh budget.
    REQUIRE(h.fire_reconnect() == Actions{Action::open_socket()});
    CHECK(h.m.on_open() == Actions{Action::stop_polling()});
    CHECK(h.m.state() == State::connected);
    CHECK_FALSE(h.m.gave_up());
    CHECK_FALSE(h.m.status().probing);
    CHECK(h.m.attempts() == 0);
    CHECK(h.m.on_close(1006).size() == 1);  // start_polling
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s + 300ms);
}

TEST_CASE("no probing after a no-reconnect close code, with auto_reconnect off, or probe_interval 0",
          "[client][state][probe]") {
    SECTION("close code 1008") {
        Harness h;
        h.connected();
        h.m.on_close(1008);
        CHECK(h.m.gave_up());
        CHECK_FALSE(h.m.status().probing);
        CHECK_FALSE(h.m.reconnect_at());
    }
    SECTION("auto_reconnect off") {
        ClientSettings s;
        s.auto_reconnect = false;
        Harness h{s};
        h.connected();
        h.m.on_close(1006);
        CHECK(h.m.gave_up());
        CHECK_FALSE(h.m.status().probing);
        CHECK_FALSE(h.m.reconnect_at());
    }
    SECTION("probe_interval 0") {
        Harness h{capped(1, 0s)};
        h.give_up();
        CHECK_FALSE(h.m.status().probing);
        CHECK_FALSE(h.m.next_deadline());
        h.clock->advance(24h);
        CHECK(h.m.tick().empty());
    }
    CHECK_THROWS_AS(ClientStateMachine(std::make_shared<wsgate::ManualClock>(), capped(1, -1s)), std::invalid_argument);
}

TEST_CASE("suspended, a given-up machine does not probe; resume probes at once", "[client][probe][suspend]") {
    Harness h{capped(1, 60s)};
    h.give_up();
    h.m.suspend();
    CHECK(h.m.status().suspended);
    CHECK_FALSE(h.m.next_deadline());
    h.clock->advance(10min);
    CHECK(h.m.tick().empty());
    CHECK(h.m.resume() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);
    CHECK_FALSE(h.m.status().suspended);
}

TEST_CASE("retry() after giving up starts over at once with a fresh budget", "[client][state][retry]") {
    Harness h{capped(3, 0s)};
    h.give_up();
    CHECK(h.m.attempts() == 3);
    CHECK(h.m.retry() == Actions{Action::stop_polling(), Action::open_socket()});
    CHECK(h.m.state() == State::connecting);
    CHECK_FALSE(h.m.gave_up());
    CHECK(h.m.attempts() == 0);
    CHECK_FALSE(h.m.should_poll());
    h.m.on_close(1006);
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);  // the first delay again
    CHECK(h.m.status().attempt == 1);
}

TEST_CASE("retry() while waiting for the backoff goes at once and resets the count", "[client][state][retry]") {
    Harness h;
    h.connected();
    h.m.on_close(1006);
    h.fire_reconnect();
    h.m.on_close(1006);
    h.fire_reconnect();
    h.m.on_error();
    CHECK(h.m.state() == State::error);
    CHECK(h.m.attempts() == 3);
    CHECK(h.m.retry() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.attempts() == 0);

    // While the socket is opening only the count is reset; connected: nothing.
    CHECK(h.m.on_close(1006).empty());
    h.fire_reconnect();
    CHECK(h.m.attempts() == 1);
    CHECK(h.m.retry().empty());
    CHECK(h.m.attempts() == 0);
    h.m.on_open();
    CHECK(h.m.retry().empty());
    CHECK(h.m.state() == State::connected);

    // retry() after the host's close() connects again.
    h.m.close();
    CHECK(h.m.retry() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::connecting);
}

TEST_CASE("status() reports the state, the attempt, the countdown and the last close code", "[client][state][status]") {
    Harness h;
    wsgate::client::ClientStatus fresh;
    fresh.max_attempts = 10;
    CHECK(h.m.status() == fresh);
    h.connected();
    h.m.on_close(1001);
    h.fire_reconnect();
    h.m.on_close(1006);
    auto s = h.m.status();
    CHECK(s.state == State::reconnecting);
    CHECK(s.attempt == 2);
    CHECK(s.max_attempts == 10);
    CHECK(s.next_attempt_at == h.clock->now() + 2s);
    CHECK(s.next_attempt_in == wsgate::Duration{2s});
    CHECK(s.last_close_code == std::uint16_t{1006});
    CHECK(s.polling);
    CHECK_FALSE(s.gave_up);
    CHECK_FALSE(s.probing);
    h.clock->advance(1500ms);
    CHECK(h.m.status().next_attempt_in == wsgate::Duration{500ms});
    h.clock->advance(1s);  // overdue, not yet ticked: never negative
    CHECK(h.m.status().next_attempt_in == wsgate::Duration{0});
    h.m.tick();
    s = h.m.status();
    CHECK_FALSE(s.next_attempt_at);
    CHECK_FALSE(s.next_attempt_in);
    CHECK(s.attempt == 2);
}

TEST_CASE("abandon() closes the socket with the host's code and counts as a failed attempt", "[client][state][abandon]") {
    Harness h;
    CHECK(h.m.abandon(4000, "x").empty());  // no socket
    CHECK(h.m.unexpected_events() == 1);

    h.m.connect();  // opening: e.g. a token request that timed out
    CHECK(h.m.abandon(1000, "token timeout") ==
          Actions{Action::close_socket(1000, "token timeout"), Action::start_polling()});
    CHECK(h.m.state() == State::error);
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);
    CHECK(h.m.on_close(1006).empty());  // the late close of the abandoned socket
    CHECK(h.m.unexpected_events() == 2);

    h.fire_reconnect();
    h.m.on_open();
    CHECK(h.m.abandon(4000, "subscribe not acknowledged") ==
          Actions{Action::close_socket(4000, "subscribe not acknowledged"), Action::start_polling()});
    CHECK(h.m.state() == State::error);
    CHECK(h.m.attempts() == 1);
}

TEST_CASE("require_ready: an opened socket resets the count only on ready()", "[client][state][ready]") {
    ClientSettings s;
    s.require_ready = true;
    Harness h{s};
    h.connected();
    h.m.on_close(1006);
    h.fire_reconnect();
    h.m.on_open();
    CHECK(h.m.attempts() == 1);  // open, but not established
    h.m.on_close(1006);
    CHECK(h.m.reconnect_at() == h.clock->now() + 2s);  // the backoff keeps growing
    h.fire_reconnect();
    h.m.on_open();
    CHECK(h.m.ready().empty());
    CHECK(h.m.attempts() == 0);
    h.m.on_close(1006);
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);
    CHECK(h.m.ready().empty());  // not connected: ignored
    CHECK(h.m.attempts() == 1);
}
