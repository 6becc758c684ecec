// Seed 004, the events dashboard's client, in C++: a connection that rides through trouble.
//
// A real WebSocket server (wsgate::beast on 127.0.0.1) and a ReconnectingClient:
//   1. the client connects, subscribes to `events`, and receives an `event_update`;
//   2. the server restarts: the client reconnects with backoff
//      (min(max, initial·2^attempt) + jitter), a message sent while it was down waits in the
//      bounded queue and is delivered after reconnecting, and `events` is re-subscribed;
//   3. the server freezes (stops answering pings): the heartbeat's pong timeout notices the dead
//      connection and the client reconnects by itself;
//   4. a longer outage: the client gives up after its attempt cap (and would probe every
//      `probe_interval` to come back by itself), its status says so in words, and retry() ("Retry
//      now") reconnects at once.
// `event_update` messages go to a typed handler (on("event_update", …)); everything else, such as
// the acks, to on_message(). Status lines come from on_status().
// Timings are shortened (heartbeat 300 ms, backoff from 100 ms, 4 attempts) so it runs in seconds.
//
//   client_example           narrates what happens
//   client_example --check   also verifies it and exits 1 on any difference
#include <wsgate/beast/reconnecting_client.hpp>
#include <wsgate/beast/server.hpp>
#include <wsgate/wsgate.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// One server life: a Beast server and its Gateway on a given port.
struct Node {
    std::shared_ptr<wsgate::beast::Server> server;
    std::shared_ptr<wsgate::Gateway> gateway;
    std::atomic<bool> frozen{false};
    std::atomic<int> notes{0};

    explicit Node(unsigned short port) {
        wsgate::beast::ServerSettings ss;
        ss.port = port;
        ss.shutdown_timeout = 1s;
        server = std::make_shared<wsgate::beast::Server>(ss);
        wsgate::GatewaySettings gs;
        gs.router.topic_rules = {{"events", "", "", /*anonymous_read=*/true}};  // anonymous clients read `events`
        gateway = std::make_shared<wsgate::Gateway>(gs, std::make_shared<wsgate::InMemoryConnectionStore>(), server,
                                                    std::make_shared<wsgate::AnonymousAuthorizer>());
        // A frozen server still holds the socket but answers nothing: only a heartbeat notices.
        gateway->router().on("ping", [this](wsgate::MessageContext& ctx) {
            if (!frozen) ctx.reply(wsgate::Envelope{"pong"});
        }, wsgate::RouteAccess::include_anonymous);  // host routes are closed to anonymous clients unless opened
        gateway->router().on("note", [this](wsgate::MessageContext& ctx) {
            ++notes;
            ctx.ack({{"note", ctx.message().value("n", 0)}});
        }, wsgate::RouteAccess::include_anonymous);
        server->attach(gateway);
        server->start();
    }
    ~Node() { server->stop(); }
    std::size_t publish(const std::string& what) {
        return gateway->publish(wsgate::Envelope{"event_update"}.topic("events").data({{"what", what}}),
                                wsgate::Audience::topic("events"))
            .delivered;
    }
};

/// A status line for people, e.g. "Reconnecting in 0.4 s (attempt 2/4)".
std::string describe(const wsgate::beast::ReconnectingClientStatus& s) {
    using wsgate::client::ConnectionState;
    const auto in = [&] {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(s.next_attempt_in.value_or(0ms));
        return std::to_string(ms.count() / 1000) + "." + std::to_string(ms.count() % 1000 / 100) + " s";
    };
    const auto attempt = " (attempt " + std::to_string(s.attempt) + "/" + std::to_string(s.max_attempts) + ")";
    std::string line;
    if (s.state == ConnectionState::connected) line = "Live";
    else if (s.gave_up) line = s.next_attempt_at ? "Offline — next check in " + in() : s.probing ? "Offline — checking now" : "Offline";
    else if (s.next_attempt_at) line = "Reconnecting in " + in() + attempt;
    else if (s.state == ConnectionState::connecting) line = "Connecting…";
    else if (s.state == ConnectionState::disconnected) line = "Disconnected";
    else line = "Reconnecting now" + attempt;
    if (!s.last_failure.empty() && s.state != ConnectionState::connected) line += " — " + s.last_failure;
    return line;
}

template <class Pred>
bool wait_for(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return pred();
}

}  // namespace

int main(int argc, char** argv) {
    const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    auto node = std::make_unique<Node>(0);
    const auto port = node->server->port();

    wsgate::beast::ReconnectingClientSettings cs;
    cs.machine.reconnect.initial_delay = 100ms;
    cs.machine.reconnect.max_delay = 1s;
    cs.machine.reconnect.max_jitter = 100ms;
    cs.machine.heartbeat.interval = 300ms;
    cs.machine.heartbeat.timeout = 300ms;
    cs.machine.reconnect.max_attempts = 4;
    cs.machine.probe_interval = 5s;  // after the cap: one attempt every 5 s (+ jitter) until back
    cs.connect_timeout = 1s;         // every step of an attempt has a deadline
    cs.handshake_timeout = 1s;
    cs.subscribe_ack_timeout = 2s;
    wsgate::beast::ReconnectingClient client{"ws://127.0.0.1:" + std::to_string(port) + "/ws", cs};

    std::mutex mu;
    std::vector<std::string> events;  // the `what` of each event_update
    std::size_t other_messages = 0;
    std::string last_line;
    client.on("event_update", [&](const nlohmann::json& m) {
        std::lock_guard lock(mu);
        events.push_back(m.value("data", nlohmann::json::object()).value("what", ""));
    });
    client.on_message([&](std::string_view) {  // acks and any other type
        std::lock_guard lock(mu);
        ++other_messages;
    });
    client.on_status([&](const wsgate::beast::ReconnectingClientStatus& s) {
        auto line = describe(s);
        if (line == last_line) return;  // only what a person would notice
        std::cout << "[status] " << line << '\n';
        last_line = std::move(line);
    });
    auto count_events = [&](const std::string& what) {
        std::lock_guard lock(mu);
        return std::count(events.begin(), events.end(), what);
    };
    auto subscribed = [&](Node& n) { return n.gateway->store().subscribers("events").size() == 1; };

    client.subscribe("events");
    client.start();
    bool ok = wait_for([&] { return subscribed(*node); });
    node->publish("first");
    ok = ok && wait_for([&] { return count_events("first") == 1; });
    std::cout << "1. connected, subscribed, received the first event: " << (ok ? "yes" : "NO") << '\n';

    // 2. The server restarts on the same port; a message is sent while it is down.
    node.reset();
    ok = ok && wait_for([&] { return client.state() != wsgate::client::ConnectionState::connected; });
    client.send(R"({"type":"note","n":7})");
    std::this_thread::sleep_for(300ms);  // a few failed attempts, with backoff
    node = std::make_unique<Node>(port);
    const bool back = wait_for([&] { return subscribed(*node) && node->notes == 1; });
    node->publish("after-restart");
    const bool got_after = wait_for([&] { return count_events("after-restart") == 1; });
    ok = ok && back && got_after;
    std::cout << "2. reconnected after the restart, re-subscribed, queued note delivered, event received: "
              << (back && got_after ? "yes" : "NO") << '\n';

    // 3. The server freezes: pings go unanswered; the heartbeat ends the dead connection.
    const auto before = client.connections_opened();
    node->frozen = true;
    const bool noticed = wait_for([&] { return client.connections_opened() > before; }, 5s);
    node->frozen = false;
    const bool healthy = wait_for([&] { return client.state() == wsgate::client::ConnectionState::connected && subscribed(*node); });
    node->publish("after-freeze");
    const bool got_final = wait_for([&] { return count_events("after-freeze") == 1; });
    ok = ok && noticed && healthy && got_final;
    std::cout << "3. heartbeat timeout noticed the frozen server and the client reconnected: "
              << (noticed && healthy && got_final ? "yes" : "NO") << '\n';

    // 4. A longer outage: past the attempt cap the client is offline (polling, probing slowly).
    node.reset();
    const bool gave_up = wait_for([&] { return client.status().gave_up; });
    const auto offline = client.status();
    std::cout << "4. gave up after " << offline.attempt << "/" << offline.max_attempts
              << " attempts; probing: " << (offline.probing ? "yes" : "no") << "; last failure: "
              << offline.last_failure << '\n';
    node = std::make_unique<Node>(port);
    client.retry();  // "Retry now": at once, with a fresh backoff
    const bool live = wait_for([&] { return client.state() == wsgate::client::ConnectionState::connected && subscribed(*node); });
    node->publish("after-retry");
    const bool got_retry = wait_for([&] { return count_events("after-retry") == 1; });
    ok = ok && gave_up && offline.probing && live && got_retry;
    std::cout << "   retry() reconnected and the event arrived: " << (live && got_retry ? "yes" : "NO") << '\n';
    {
        std::lock_guard lock(mu);
        ok = ok && other_messages > 0;  // the subscribe acks went to on_message
    }
    std::cout << "sockets opened: " << client.connections_opened() << '\n';

    client.stop();
    if (!check) return 0;
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}
