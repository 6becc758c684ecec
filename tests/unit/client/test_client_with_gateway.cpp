// ClientStateMachine driven against a real Gateway (in-memory transport): the ping/pong and
// subscribe frames it sends are the ones the server understands, and re-subscription after a
// reconnect restores delivery.
#include "catch.hpp"

#include <wsgate/client.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>

#include <nlohmann/json.hpp>

using namespace std::chrono_literals;
using nlohmann::json;
using wsgate::client::Action;
using wsgate::client::Actions;
using State = wsgate::client::ConnectionState;

namespace {

// The host glue a real socket client would have, with the Gateway as the peer.
struct Loop {
    std::shared_ptr<wsgate::ManualClock> clock = std::make_shared<wsgate::ManualClock>();
    std::shared_ptr<wsgate::InMemoryConnectionStore> store = std::make_shared<wsgate::InMemoryConnectionStore>();
    std::shared_ptr<wsgate::InMemoryTransport> transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::Gateway gw{settings(), store, transport, std::make_shared<wsgate::AnonymousAuthorizer>(), clock};

    static wsgate::GatewaySettings settings() {
        wsgate::GatewaySettings s;
        s.router.topic_rules = {{"news", "", "", /*anonymous_read=*/true}};
        return s;
    }
    wsgate::client::ClientStateMachine m{clock, {}, [] { return std::uint64_t{0}; }};

    wsgate::ConnectionId conn;  // the socket, if open
    bool open_requested = false;
    bool polling = false;
    std::vector<json> delivered;
    std::size_t frames_sent = 0;

    void apply(const Actions& actions) {
        for (const auto& a : actions) {
            switch (a.kind) {
                case Action::Kind::open_socket: open_requested = true; break;
                case Action::Kind::close_socket:
                    if (!conn.empty()) gw.on_disconnect(conn);
                    conn.clear();
                    break;
                case Action::Kind::send_frame:
                    REQUIRE_FALSE(conn.empty());
                    ++frames_sent;
                    gw.on_message(conn, a.text);
                    break;
                case Action::Kind::deliver: delivered.push_back(json::parse(a.text)); break;
                case Action::Kind::start_polling: polling = true; break;
                case Action::Kind::stop_polling: polling = false; break;
            }
        }
    }
    // Completes a requested open against the gateway.
    void accept() {
        REQUIRE(open_requested);
        open_requested = false;
        auto c = gw.on_connect({});
        REQUIRE(c.accepted);
        transport->open(c.id);
        conn = c.id;
        apply(m.on_open());
    }
    // Hands every frame the server queued to the state machine.
    void pump() {
        if (conn.empty()) return;
        for (const auto& frame : transport->drain(conn)) apply(m.on_message(frame));
    }
    std::size_t delivered_of_type(const std::string& type) const {
        std::size_t n = 0;
        for (const auto& d : delivered) n += d.value("type", "") == type;
        return n;
    }
};

}  // namespace

TEST_CASE("subscriptions are restored on the server after a reconnect", "[client][gateway]") {
    Loop l;
    l.apply(l.m.subscribe("news"));
    l.apply(l.m.send(R"({"type":"hello"})"));  // queued until connected
    l.apply(l.m.connect());
    l.accept();
    l.pump();
    REQUIRE(l.m.state() == State::connected);
    CHECK(l.delivered_of_type("ack") == 2);  // the subscribe, then the unknown "hello" type
    l.gw.publish(wsgate::Envelope{"headline"}.data("one"), wsgate::Audience::topic("news"));
    l.pump();
    CHECK(l.delivered_of_type("headline") == 1);

    // The server drops the connection; the client reconnects after the backoff.
    const auto old = l.conn;
    REQUIRE(l.gw.end(old, wsgate::EndReason::kicked));
    l.conn.clear();
    l.apply(l.m.on_close(1000));
    CHECK(l.polling);
    l.gw.publish(wsgate::Envelope{"headline"}.data("missed"), wsgate::Audience::topic("news"));
    l.clock->set(*l.m.reconnect_at());
    l.apply(l.m.tick());
    l.accept();
    CHECK_FALSE(l.polling);
    l.pump();
    CHECK(l.conn != old);
    l.gw.publish(wsgate::Envelope{"headline"}.data("two"), wsgate::Audience::topic("news"));
    l.pump();
    CHECK(l.delivered_of_type("headline") == 2);
    CHECK(l.delivered.back()["data"] == "two");
}

TEST_CASE("the heartbeat ping is answered by the gateway's pong", "[client][gateway][heartbeat]") {
    Loop l;
    l.apply(l.m.connect());
    l.accept();
    for (int i = 1; i <= 5; ++i) {
        l.clock->advance(30s);
        l.apply(l.m.tick());
        l.pump();  // the pong is consumed, not delivered
        l.clock->advance(5s);
        l.apply(l.m.tick());
        REQUIRE(l.m.state() == State::connected);
        l.clock->advance(-5s);
    }
    CHECK(l.frames_sent == 5);
    CHECK(l.delivered.empty());

    // A peer that stops answering (vanished) is detected within the pong timeout.
    l.transport->vanish(l.conn);
    l.clock->advance(30s);
    l.apply(l.m.tick());
    l.clock->advance(5s);
    l.apply(l.m.tick());
    CHECK(l.m.state() == State::reconnecting);
    CHECK(l.conn.empty());
    CHECK(l.polling);
}
