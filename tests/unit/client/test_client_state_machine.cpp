// ClientStateMachine: every transition, backoff, polling, heartbeat, suspend/resume, queue,
// re-subscription, and events that arrive in the wrong state.
#include "catch.hpp"

#include <wsgate/client.hpp>

#include "state_machine_harness.hpp"

#include <random>

using namespace std::chrono_literals;
using wsgate_test::Harness;
using wsgate::client::Action;
using wsgate::client::Actions;
using wsgate::client::ClientSettings;
using wsgate::client::ClientStateMachine;
using State = wsgate::client::ConnectionState;

namespace {

const std::string ping = R"({"type":"ping"})";

}  // namespace

TEST_CASE("a new machine is disconnected and idle", "[client][state]") {
    Harness h;
    CHECK(h.m.state() == State::disconnected);
    CHECK_FALSE(h.m.should_poll());
    CHECK_FALSE(h.m.gave_up());
    CHECK_FALSE(h.m.next_deadline());
    CHECK_FALSE(h.m.reconnect_at());
    CHECK(h.m.tick().empty());
    CHECK(to_string(State::reconnecting) == "reconnecting");
    CHECK(to_string(State::error) == "error");
    CHECK_THROWS_AS(ClientStateMachine(nullptr), std::invalid_argument);
}

TEST_CASE("connect → connecting → connected", "[client][state]") {
    Harness h;
    CHECK(h.m.connect() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::connecting);
    CHECK_FALSE(h.m.should_poll());
    CHECK(h.m.next_deadline() == h.clock->now() + 10s);  // open timeout
    CHECK(h.m.connect().empty());                        // already under way
    CHECK(h.m.on_open().empty());                        // no topics, nothing queued
    CHECK(h.m.state() == State::connected);
    CHECK(h.m.next_deadline() == h.clock->now() + 30s);  // first ping
    CHECK(h.m.connect().empty());
    CHECK(h.m.unexpected_events() == 0);
}

TEST_CASE("a failed first connect reconnects with backoff and polls meanwhile", "[client][state]") {
    Harness h;
    h.jitter = 250;
    h.m.connect();
    const auto t0 = h.clock->now();
    CHECK(h.m.on_close(1006) == Actions{Action::start_polling()});
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.should_poll());
    CHECK(h.m.last_close_code() == std::uint16_t{1006});
    CHECK(h.m.reconnect_at() == t0 + 1250ms);
    CHECK(h.m.next_deadline() == t0 + 1250ms);
    CHECK(h.m.tick(t0 + 1249ms).empty());
    CHECK(h.m.on_message("stale").empty());  // no socket: ignored

    h.clock->set(t0 + 1250ms);
    CHECK(h.m.tick() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);
    CHECK_FALSE(h.m.reconnect_at());
    CHECK(h.m.attempts() == 1);
    CHECK(h.m.on_open() == Actions{Action::stop_polling()});
    CHECK(h.m.state() == State::connected);
    CHECK_FALSE(h.m.should_poll());
    CHECK(h.m.attempts() == 0);  // reset on success
}

TEST_CASE("the reconnect delays follow the backoff until the cap, then the machine gives up", "[client][state]") {
    ClientSettings s;
    s.probe_interval = 0s;  // stay given up (probing after the cap: see below)
    Harness h{s};
    h.connected();
    auto out = h.m.on_close(1001);
    CHECK(out == Actions{Action::start_polling()});
    std::vector<wsgate::Duration> delays;
    for (;;) {
        REQUIRE(h.m.state() == State::reconnecting);
        const auto at = h.m.reconnect_at();
        REQUIRE(at);
        delays.push_back(std::chrono::duration_cast<wsgate::Duration>(*at - h.clock->now()));
        REQUIRE(h.fire_reconnect() == Actions{Action::open_socket()});
        out = h.m.on_close(1006);  // the attempt fails
        if (h.m.state() != State::reconnecting) break;
        CHECK(out.empty());  // still polling: no new polling action
    }
    const std::vector<wsgate::Duration> want{1s, 2s, 4s, 8s, 16s, 30s, 30s, 30s, 30s, 30s};
    CHECK(delays == want);
    CHECK(h.m.state() == State::disconnected);
    CHECK(h.m.gave_up());
    CHECK(h.m.should_poll());
    CHECK(h.m.attempts() == 10);
    CHECK_FALSE(h.m.reconnect_at());
    CHECK_FALSE(h.m.next_deadline());
    h.clock->advance(1h);
    CHECK(h.m.tick().empty());

    // A manual retry starts over with a fresh budget.
    CHECK(h.m.connect() == Actions{Action::stop_polling(), Action::open_socket()});
    CHECK(h.m.state() == State::connecting);
    CHECK_FALSE(h.m.gave_up());
    CHECK(h.m.attempts() == 0);
    CHECK(h.m.on_close(1006) == Actions{Action::start_polling()});
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);
}

TEST_CASE("a successful reconnect resets the backoff", "[client][state]") {
    Harness h;
    h.connected();
    h.m.on_close(1006);
    h.fire_reconnect();
    h.m.on_close(1006);
    CHECK(h.m.reconnect_at() == h.clock->now() + 2s);
    h.fire_reconnect();
    h.m.on_open();
    h.m.on_close(1006);
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);
}

TEST_CASE("a socket error goes to `error`, closes the socket, and the late close is ignored", "[client][state]") {
    Harness h;
    h.connected();
    CHECK(h.m.on_error() == (Actions{Action::close_socket(1000, "socket error"), Action::start_polling()}));
    CHECK(h.m.state() == State::error);
    CHECK(h.m.should_poll());
    CHECK(h.m.reconnect_at() == h.clock->now() + 1s);
    CHECK(h.m.on_close(1006).empty());  // the browser's close after the error
    CHECK(h.m.on_error().empty());
    CHECK(h.m.state() == State::error);
    CHECK(h.m.unexpected_events() == 2);
    CHECK_FALSE(h.m.last_close_code());
    CHECK(h.fire_reconnect() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);

    // An error while a reconnect socket opens is a failed attempt.
    CHECK(h.m.on_error() == Actions{Action::close_socket(1000, "socket error")});
    CHECK(h.m.state() == State::error);
    CHECK(h.m.reconnect_at() == h.clock->now() + 2s);
}

TEST_CASE("an error during the first connect", "[client][state]") {
    Harness h;
    h.m.connect();
    CHECK(h.m.on_error() == (Actions{Action::close_socket(1000, "socket error"), Action::start_polling()}));
    CHECK(h.m.state() == State::error);
}

TEST_CASE("close codes in no_reconnect_codes give up at once", "[client][state]") {
    Harness h;
    h.connected();
    CHECK(h.m.on_close(1008) == Actions{Action::start_polling()});
    CHECK(h.m.state() == State::disconnected);
    CHECK(h.m.gave_up());
    CHECK(h.m.should_poll());
    CHECK(h.m.last_close_code() == std::uint16_t{1008});

    ClientSettings s;
    s.no_reconnect_codes = {4401};
    Harness custom{s};
    custom.connected();
    custom.m.on_close(1008);
    CHECK(custom.m.state() == State::reconnecting);
    custom.fire_reconnect();
    custom.m.on_open();
    custom.m.on_close(4401);
    CHECK(custom.m.state() == State::disconnected);
}

TEST_CASE("auto_reconnect off: a lost connection falls back to polling", "[client][state]") {
    ClientSettings s;
    s.auto_reconnect = false;
    Harness h{s};
    h.connected();
    CHECK(h.m.on_close(1001) == Actions{Action::start_polling()});
    CHECK(h.m.state() == State::disconnected);
    CHECK(h.m.gave_up());
    CHECK(h.m.attempts() == 0);
}

TEST_CASE("heartbeat: pings every 30 s and reconnects when the pong is late", "[client][heartbeat][state]") {
    Harness h;
    h.connected();
    const auto t0 = h.clock->now();
    CHECK(h.m.tick(t0 + 29s).empty());
    CHECK(h.m.tick(t0 + 30s) == Actions{Action::send_frame(ping)});
    h.clock->set(t0 + 31s);
    CHECK(h.m.on_message(R"({"type":"pong","timestamp":"2024-01-01T00:00:00.000Z"})").empty());  // consumed
    CHECK(h.m.tick(t0 + 36s).empty());  // answered: no timeout
    CHECK(h.m.next_deadline() == t0 + 60s);
    CHECK(h.m.tick(t0 + 60s) == Actions{Action::send_frame(ping)});
    CHECK(h.m.next_deadline() == t0 + 65s);
    CHECK(h.m.tick(t0 + 64999ms).empty());
    h.clock->set(t0 + 65s);
    CHECK(h.m.tick() == (Actions{Action::close_socket(4000, "heartbeat timeout"), Action::start_polling()}));
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.reconnect_at() == t0 + 66s);
    CHECK(h.m.on_close(4000).empty());  // our own close comes back: ignored
    CHECK(h.m.on_message(R"({"type":"pong"})").empty());
}

TEST_CASE("messages that only look like pongs are delivered", "[client][state]") {
    Harness h;
    h.connected();
    for (std::string_view text : {R"({"type":"pongo"})", "pong", R"({"data":"pong"})", R"(["pong"])",
                                  R"({"type":"pong")", R"({"type":["pong"]})", "", "\xff\xfe"}) {
        INFO(text);
        CHECK(h.m.on_message(text) == Actions{Action::deliver(std::string{text})});
    }

    ClientSettings s;
    s.heartbeat_enabled = false;
    Harness off{s};
    off.connected();
    CHECK_FALSE(off.m.next_deadline());
    CHECK(off.m.tick(off.clock->now() + 1h).empty());
    CHECK(off.m.on_message(R"({"type":"pong"})") == Actions{Action::deliver(R"({"type":"pong"})")});
}

TEST_CASE("a socket that never opens times out and counts as a failed attempt", "[client][state]") {
    Harness h;
    h.m.connect();
    const auto t0 = h.clock->now();
    CHECK(h.m.tick(t0 + 9999ms).empty());
    h.clock->set(t0 + 10s);
    CHECK(h.m.tick() == (Actions{Action::close_socket(1000, "open timeout"), Action::start_polling()}));
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.on_open().empty());  // the timed-out socket opens late: not ours any more
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.unexpected_events() == 1);

    ClientSettings s;
    s.open_timeout = 0ms;
    Harness forever{s};
    forever.m.connect();
    CHECK_FALSE(forever.m.next_deadline());
    CHECK(forever.m.tick(forever.clock->now() + 24h).empty());
    CHECK(forever.m.state() == State::connecting);
}

TEST_CASE("suspend pauses the heartbeat; resume checks the connection at once", "[client][suspend]") {
    Harness h;
    h.connected();
    const auto t0 = h.clock->now();
    CHECK(h.m.suspend().empty());
    CHECK(h.m.suspended());
    CHECK_FALSE(h.m.next_deadline());
    CHECK(h.m.tick(t0 + 10min).empty());  // no ping while hidden
    CHECK(h.m.state() == State::connected);
    CHECK(h.m.send("still works") == Actions{Action::send_frame("still works")});

    h.clock->set(t0 + 10min);
    CHECK(h.m.resume() == Actions{Action::send_frame(ping)});
    CHECK_FALSE(h.m.suspended());
    CHECK(h.m.resume().empty());  // not suspended
    // The socket died while hidden: no pong within 5 s → reconnect.
    CHECK(h.m.tick(t0 + 10min + 5s) ==
          (Actions{Action::close_socket(4000, "heartbeat timeout"), Action::start_polling()}));
}

TEST_CASE("suspend pauses the reconnect timer; resume reconnects at once", "[client][suspend]") {
    Harness h;
    h.connected();
    h.m.on_close(1006);
    const auto at = *h.m.reconnect_at();
    h.m.suspend();
    CHECK_FALSE(h.m.next_deadline());
    CHECK(h.m.tick(at + 1h).empty());
    CHECK(h.m.state() == State::reconnecting);
    h.clock->set(at + 1h);
    CHECK(h.m.resume() == Actions{Action::open_socket()});
    CHECK(h.m.on_open() == Actions{Action::stop_polling()});
}

TEST_CASE("a connection lost while suspended reconnects on resume", "[client][suspend]") {
    Harness h;
    h.connected();
    h.m.suspend();
    CHECK(h.m.on_close(1006) == Actions{Action::start_polling()});
    CHECK(h.m.tick(h.clock->now() + 1h).empty());
    CHECK(h.m.resume() == Actions{Action::open_socket()});
    // Opened while suspended: the heartbeat starts paused.
    h.m.suspend();
    h.m.on_open();
    CHECK(h.m.tick(h.clock->now() + 1h).empty());
    CHECK(h.m.resume() == Actions{Action::send_frame(ping)});
}

TEST_CASE("suspend while disconnected or given up does nothing on resume", "[client][suspend]") {
    Harness h;
    h.m.suspend();
    CHECK(h.m.resume().empty());
    CHECK(h.m.state() == State::disconnected);
    ClientSettings s;
    s.auto_reconnect = false;
    Harness g{s};
    g.connected();
    g.m.on_close(1006);
    g.m.suspend();
    CHECK(g.m.resume().empty());
    CHECK(g.m.state() == State::disconnected);
}

TEST_CASE("messages sent while offline are flushed in order after the subscriptions", "[client][queue]") {
    Harness h;
    CHECK(h.m.subscribe("game:1").empty());
    CHECK(h.m.send("a").empty());
    CHECK(h.m.send("b").empty());
    CHECK(h.m.queued() == 2);
    h.m.connect();
    CHECK(h.m.send("c").empty());
    CHECK(h.m.on_open() == (Actions{Action::send_frame(R"({"topic":"game:1","type":"subscribe"})"),
                                    Action::send_frame("a"), Action::send_frame("b"), Action::send_frame("c")}));
    CHECK(h.m.queued() == 0);
    CHECK(h.m.send("d") == Actions{Action::send_frame("d")});

    // Lost again: queue, then flush after the re-subscription.
    h.m.on_close(1006);
    h.m.send("e");
    h.fire_reconnect();
    CHECK(h.m.on_open() == (Actions{Action::stop_polling(),
                                    Action::send_frame(R"({"topic":"game:1","type":"subscribe"})"),
                                    Action::send_frame("e")}));
}

TEST_CASE("queue overflow drops the oldest and counts", "[client][queue]") {
    ClientSettings s;
    s.max_queued = 3;
    Harness h{s};
    for (const auto* m : {"1", "2", "3", "4", "5"}) h.m.send(m);
    CHECK(h.m.queued() == 3);
    CHECK(h.m.dropped() == 2);
    h.m.connect();
    CHECK(h.m.on_open() == (Actions{Action::send_frame("3"), Action::send_frame("4"), Action::send_frame("5")}));

    ClientSettings none;
    none.max_queued = 0;
    Harness z{none};
    CHECK(z.m.send("x").empty());
    CHECK(z.m.queued() == 0);
    CHECK(z.m.dropped() == 1);
}

TEST_CASE("the queue survives close() and a failed attempt", "[client][queue]") {
    Harness h;
    h.m.send("kept");
    h.m.connect();
    h.m.on_close(1006);
    h.m.close();
    CHECK(h.m.queued() == 1);
    h.m.connect();
    CHECK(h.m.on_open() == Actions{Action::send_frame("kept")});
}

TEST_CASE("subscriptions are sent live, remembered, and re-sent after a reconnect", "[client][subscribe]") {
    Harness h;
    h.connected();
    CHECK(h.m.subscribe("a") == Actions{Action::send_frame(ClientStateMachine::subscribe_frame("a"))});
    CHECK(h.m.subscribe("b") == Actions{Action::send_frame(ClientStateMachine::subscribe_frame("b"))});
    CHECK(h.m.subscribe("a").empty());  // already subscribed
    CHECK(h.m.subscriptions() == std::vector<std::string>{"a", "b"});

    h.m.on_close(1006);
    CHECK(h.m.unsubscribe("a").empty());  // offline: remembered, not queued
    CHECK(h.m.subscribe("c").empty());
    CHECK(h.m.unsubscribe("zzz").empty());
    CHECK(h.m.queued() == 0);
    h.fire_reconnect();
    CHECK(h.m.on_open() == (Actions{Action::stop_polling(), Action::send_frame(ClientStateMachine::subscribe_frame("b")),
                                    Action::send_frame(ClientStateMachine::subscribe_frame("c"))}));
    CHECK(h.m.unsubscribe("b") == Actions{Action::send_frame(ClientStateMachine::unsubscribe_frame("b"))});
    CHECK(h.m.subscriptions() == std::vector<std::string>{"c"});

    CHECK(ClientStateMachine::subscribe_frame("x\"y") == R"({"topic":"x\"y","type":"subscribe"})");
    CHECK(ClientStateMachine::unsubscribe_frame("t") == R"({"topic":"t","type":"unsubscribe"})");
    CHECK_NOTHROW(h.m.subscribe("bad\xff utf8"));
}

TEST_CASE("close() from every state", "[client][state]") {
    SECTION("connected: closes the socket") {
        Harness h;
        h.connected();
        CHECK(h.m.close() == Actions{Action::close_socket(1000, "client closed")});
        CHECK(h.m.state() == State::disconnected);
        CHECK_FALSE(h.m.should_poll());
        CHECK_FALSE(h.m.gave_up());
        CHECK_FALSE(h.m.next_deadline());
        CHECK(h.m.on_close(1000).empty());  // the close we asked for
        CHECK(h.m.tick(h.clock->now() + 1h).empty());
    }
    SECTION("connecting: closes the opening socket; a late open is ignored") {
        Harness h;
        h.m.connect();
        CHECK(h.m.close() == Actions{Action::close_socket(1000, "client closed")});
        CHECK(h.m.on_open().empty());
        CHECK(h.m.state() == State::disconnected);
        CHECK(h.m.unexpected_events() == 1);
    }
    SECTION("reconnecting (waiting): stops polling, no socket to close") {
        Harness h;
        h.connected();
        h.m.on_close(1006);
        CHECK(h.m.close() == Actions{Action::stop_polling()});
        CHECK_FALSE(h.m.reconnect_at());
        CHECK(h.m.tick(h.clock->now() + 1h).empty());
    }
    SECTION("given up: stops polling") {
        Harness h;
        h.connected();
        h.m.on_close(1008);
        CHECK(h.m.close() == Actions{Action::stop_polling()});
        CHECK_FALSE(h.m.gave_up());
    }
    SECTION("disconnected: nothing") {
        Harness h;
        CHECK(h.m.close().empty());
    }
}

TEST_CASE("connect() while waiting to reconnect goes at once", "[client][state]") {
    Harness h;
    h.connected();
    h.m.on_error();
    CHECK(h.m.state() == State::error);
    CHECK(h.m.connect() == Actions{Action::open_socket()});
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.connect().empty());  // already opening
    CHECK(h.m.on_open() == Actions{Action::stop_polling()});
}

TEST_CASE("socket events in states where they make no sense are ignored", "[client][state]") {
    Harness h;
    // disconnected
    CHECK(h.m.on_open().empty());
    CHECK(h.m.on_close(1000).empty());
    CHECK(h.m.on_error().empty());
    CHECK(h.m.on_message("hello").empty());
    CHECK(h.m.state() == State::disconnected);
    // connecting: messages before open are not ours
    h.m.connect();
    CHECK(h.m.on_message("early").empty());
    CHECK(h.m.state() == State::connecting);
    // connected: a second open
    h.m.on_open();
    CHECK(h.m.on_open().empty());
    CHECK(h.m.state() == State::connected);
    // reconnecting (waiting)
    h.m.on_close(1006);
    CHECK(h.m.on_open().empty());
    CHECK(h.m.on_close(1006).empty());
    CHECK(h.m.on_error().empty());
    CHECK(h.m.state() == State::reconnecting);
    CHECK(h.m.unexpected_events() == 9);
}

TEST_CASE("random event storms never break the invariants", "[client][state]") {
    ClientSettings s;
    s.max_queued = 5;
    s.reconnect.max_attempts = 4;
    Harness h{s};
    std::mt19937 rng{12345};
    std::size_t opens_requested = 0;
    for (int i = 0; i < 20000; ++i) {
        Actions out;
        switch (rng() % 13) {
            case 0: out = h.m.connect(); break;
            case 1: out = h.m.close(); break;
            case 2: out = h.m.send("m" + std::to_string(i)); break;
            case 3: out = h.m.subscribe("t" + std::to_string(rng() % 4)); break;
            case 4: out = h.m.unsubscribe("t" + std::to_string(rng() % 4)); break;
            case 5: out = h.m.suspend(); break;
            case 6: out = h.m.resume(); break;
            case 7: out = h.m.on_open(); break;
            case 8: out = h.m.on_close(static_cast<std::uint16_t>(rng() % 2 ? 1006 : 1008)); break;
            case 9: out = h.m.on_error(); break;
            case 10: out = h.m.on_message(rng() % 2 ? R"({"type":"pong"})" : "x"); break;
            default:
                h.clock->advance(std::chrono::milliseconds{rng() % 40000});
                out = h.m.tick();
                break;
        }
        for (const auto& a : out) opens_requested += a.kind == Action::Kind::open_socket;
        const auto st = h.m.state();
        REQUIRE(h.m.queued() <= 5);
        if (st == State::connected) {
            REQUIRE_FALSE(h.m.should_poll());
            REQUIRE(h.m.queued() == 0);
            REQUIRE_FALSE(h.m.reconnect_at());
        }
        if (st == State::disconnected) {
            REQUIRE(h.m.reconnect_at().has_value() == h.m.status().probing);  // only a probe is scheduled
            REQUIRE(h.m.should_poll() == h.m.gave_up());
        }
        if (st == State::reconnecting || st == State::error) REQUIRE(h.m.should_poll());
        if (st == State::error) REQUIRE(h.m.reconnect_at());
        REQUIRE(h.m.attempts() <= 4);
    }
    CHECK(opens_requested > 10);
}
