// wsgate::beast::Server and Client over loopback sockets, with a real Gateway in the same process.
#include "catch.hpp"

#include <wsgate/auth/dual_token_authorizer.hpp>
#include <wsgate/beast/client.hpp>
#include <wsgate/beast/reconnecting_client.hpp>
#include <wsgate/beast/server.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/store/memory_store.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;
namespace wb = wsgate::beast;

namespace {

// token=good → a user; token=forbidden → 403; none → 401. Remembers the last request.
class TestAuthorizer final : public wsgate::Authorizer {
public:
    wsgate::AuthDecision authorize(const wsgate::ConnectRequest& req) override {
        {
            std::lock_guard lk(mu_);
            last_ = req;
        }
        const std::string* t = req.query_param("token");
        if (t == nullptr) return wsgate::AuthDecision::deny(401, "missing_token");
        if (*t == "forbidden") return wsgate::AuthDecision::deny(403, "forbidden");
        if (*t != "good") return wsgate::AuthDecision::deny(401, "invalid_token");
        wsgate::Principal p;
        p.kind = wsgate::PrincipalKind::user;
        p.user_id = "u1";
        p.permissions = {"*"};
        return wsgate::AuthDecision::allow(std::move(p));
    }
    wsgate::ConnectRequest last() {
        std::lock_guard lk(mu_);
        return last_;
    }

private:
    std::mutex mu_;
    wsgate::ConnectRequest last_;
};

struct Rig {
    std::shared_ptr<TestAuthorizer> auth = std::make_shared<TestAuthorizer>();
    std::shared_ptr<wb::Server> server;
    std::shared_ptr<wsgate::Gateway> gw;

    explicit Rig(wb::ServerSettings ss = {}, wsgate::GatewaySettings gs = {}) {
        ss.port = 0;
        gs.rate_per_second = 0;
        server = std::make_shared<wb::Server>(ss);
        gw = std::make_shared<wsgate::Gateway>(gs, std::make_shared<wsgate::InMemoryConnectionStore>(), server, auth);
        server->attach(gw);
        server->start();
    }
    ~Rig() { server->stop(); }
    std::string url(const std::string& query = "token=good") const {
        return "ws://127.0.0.1:" + std::to_string(server->port()) + "/ws" + (query.empty() ? "" : "?" + query);
    }
};

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return p();
}

std::optional<nlohmann::json> next_of_type(wb::Client& c, const std::string& type) {
    for (int i = 0; i < 50; ++i) {
        auto f = c.receive(5s);
        if (!f) return std::nullopt;
        auto j = nlohmann::json::parse(*f, nullptr, false);
        if (j.is_object() && j.value("type", "") == type) return j;
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("a denied upgrade gets its HTTP status and never an open socket", "[e2e][beast]") {
    Rig rig;
    wb::Client none;
    CHECK(none.connect(rig.url("")));
    CHECK(none.handshake_status() == 401);
    CHECK(none.handshake_body().find("missing_token") != std::string::npos);
    CHECK_FALSE(none.is_open());

    wb::Client forbidden;
    CHECK(forbidden.connect(rig.url("token=forbidden")));
    CHECK(forbidden.handshake_status() == 403);

    wb::Client wrong_path;
    CHECK(wrong_path.connect("ws://127.0.0.1:" + std::to_string(rig.server->port()) + "/other?token=good"));
    CHECK(wrong_path.handshake_status() == 404);

    CHECK(rig.gw->metrics().denied_connects.load() == 2);
    CHECK(rig.server->connection_count() == 0);
    CHECK(rig.gw->local_count() == 0);
}

TEST_CASE("the connect request carries path, query, headers, source IP and user agent", "[e2e][beast]") {
    Rig rig;
    wb::ClientSettings cs;
    cs.headers = {{"User-Agent", "e2e-agent/1.0"}, {"X-Trace", "abc"}};
    wb::Client c(cs);
    REQUIRE_FALSE(c.connect(rig.url("token=good&room=a%20b")));
    CHECK(c.handshake_status() == 101);
    auto req = rig.auth->last();
    CHECK(req.path == "/ws");
    CHECK(req.query.at("room") == "a b");
    REQUIRE(req.header("x-trace") != nullptr);
    CHECK(*req.header("x-trace") == "abc");
    CHECK(req.user_agent == "e2e-agent/1.0");
    CHECK(req.source_ip == "127.0.0.1");
    CHECK(req.connection_id.size() >= 22);
    CHECK(rig.gw->local_count() == 1);
}

TEST_CASE("a token offered as a subprotocol is used and the protocol echoed", "[e2e][beast]") {
    Rig rig;
    wb::ClientSettings cs;
    cs.subprotocols = "wsgate, good";
    wb::Client c(cs);
    REQUIRE_FALSE(c.connect(rig.url("")));
    CHECK(c.subprotocol() == "wsgate");
}

TEST_CASE("messages reach the Gateway and a publish fans out to every subscriber", "[e2e][beast]") {
    wb::ServerSettings ss;
    ss.threads = 2;
    Rig rig(ss);
    std::vector<std::unique_ptr<wb::Client>> clients;
    for (int i = 0; i < 20; ++i) {
        clients.push_back(std::make_unique<wb::Client>());
        REQUIRE_FALSE(clients.back()->connect(rig.url()));
        clients.back()->send(R"({"type":"subscribe","topic":"news"})");
        REQUIRE(next_of_type(*clients.back(), "ack"));
    }
    clients[0]->send(R"({"type":"ping"})");
    CHECK(next_of_type(*clients[0], "pong"));

    auto rep = rig.gw->publish(wsgate::Envelope{"headline"}.topic("news").data("hi"), wsgate::Audience::topic("news"));
    CHECK(rep.delivered == 20);
    for (auto& c : clients) {
        auto m = next_of_type(*c, "headline");
        REQUIRE(m);
        CHECK((*m)["data"] == "hi");
    }
    CHECK(rig.server->send("no-such-id", wsgate::make_payload("x")) == wsgate::SendStatus::gone);
}

TEST_CASE("an oversize frame is closed with 1009 and others are unaffected", "[e2e][beast]") {
    wb::ServerSettings ss;
    ss.max_message_bytes = 1024;
    Rig rig(ss);
    wb::Client big, other;
    REQUIRE_FALSE(big.connect(rig.url()));
    REQUIRE_FALSE(other.connect(rig.url()));
    big.send(std::string(4096, 'x'));
    REQUIRE(big.wait_closed(10s));
    CHECK(big.close_code() == 1009);
    other.send(R"({"type":"ping"})");
    CHECK(next_of_type(other, "pong"));
    CHECK(eventually([&] { return rig.gw->local_count() == 1; }));
}

TEST_CASE("Transport::close performs a WebSocket close with the code", "[e2e][beast]") {
    Rig rig;
    wb::Client c;
    REQUIRE_FALSE(c.connect(rig.url()));
    auto id = rig.auth->last().connection_id;
    CHECK(rig.gw->end(id, wsgate::EndReason::policy, "bye"));
    REQUIRE(c.wait_closed(10s));
    CHECK(c.close_code() == 1008);
    CHECK(eventually([&] { return rig.server->connection_count() == 0; }));
    CHECK_FALSE(rig.gw->end(id, wsgate::EndReason::policy));  // once
}

TEST_CASE("a client close reaches Gateway::on_disconnect", "[e2e][beast]") {
    Rig rig;
    wb::Client c;
    REQUIRE_FALSE(c.connect(rig.url()));
    CHECK(rig.gw->local_count() == 1);
    CHECK_FALSE(c.close());
    CHECK(eventually([&] { return rig.gw->local_count() == 0 && rig.server->connection_count() == 0; }));
    CHECK(rig.gw->metrics().ended_client_closed.load() == 1);
}

TEST_CASE("graceful shutdown closes every socket with 1001", "[e2e][beast]") {
    Rig rig;
    std::vector<std::unique_ptr<wb::Client>> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(std::make_unique<wb::Client>());
        REQUIRE_FALSE(clients.back()->connect(rig.url()));
    }
    rig.server->stop();
    for (auto& c : clients) {
        REQUIRE(c->wait_closed(10s));
        CHECK(c->close_code() == 1001);
    }
    CHECK(rig.gw->metrics().ended_shutdown.load() == 5);
}

namespace {

// A client whose I/O thread blocks in its message handler until released: it stops reading.
struct StalledClient {
    std::promise<void> release;
    std::shared_future<void> gate = release.get_future().share();
    std::atomic<int> frames{0};
    wb::Client client;
    StalledClient() {
        client.on_message([this](std::string_view) {
            ++frames;
            gate.wait();
        });
    }
    ~StalledClient() { unblock(); }
    void unblock() {
        try {
            release.set_value();
        } catch (const std::future_error&) {
        }
    }
};

}  // namespace

TEST_CASE("a slow consumer hits the bounded queue: drop policy reports backpressure", "[e2e][beast]") {
    wb::ServerSettings ss;
    ss.queue_capacity = 4;
    Rig rig(ss);
    StalledClient slow;
    wb::Client fast;
    REQUIRE_FALSE(slow.client.connect(rig.url()));
    auto slow_id = rig.auth->last().connection_id;
    REQUIRE_FALSE(fast.connect(rig.url()));
    auto big = wsgate::make_payload(std::string(256 * 1024, 'x'));
    wsgate::SendStatus st = wsgate::SendStatus::ok;
    for (int i = 0; i < 4000 && st == wsgate::SendStatus::ok; ++i) st = rig.server->send(slow_id, big);
    CHECK(st == wsgate::SendStatus::backpressure);
    CHECK(rig.server->dropped_frames() >= 1);
    slow.unblock();
    fast.send(R"({"type":"ping"})");
    CHECK(next_of_type(fast, "pong"));
    CHECK(slow.client.is_open());  // dropped frames, kept the connection
}

TEST_CASE("a slow consumer under the close policy is ended with 1008", "[e2e][beast]") {
    wb::ServerSettings ss;
    ss.queue_capacity = 4;
    ss.backpressure = wb::BackpressurePolicy::close;
    Rig rig(ss);
    StalledClient slow;
    REQUIRE_FALSE(slow.client.connect(rig.url()));
    auto slow_id = rig.auth->last().connection_id;
    auto big = wsgate::make_payload(std::string(256 * 1024, 'x'));
    wsgate::SendStatus st = wsgate::SendStatus::ok;
    for (int i = 0; i < 4000 && st == wsgate::SendStatus::ok; ++i) st = rig.server->send(slow_id, big);
    CHECK(st == wsgate::SendStatus::backpressure);
    CHECK(eventually([&] { return rig.gw->metrics().ended_backpressure.load() == 1; }));
    slow.unblock();
    REQUIRE(slow.client.wait_closed(20s));
    CHECK(slow.client.close_code() == 1008);
}

TEST_CASE("keep-alive pings hold a live peer; a silent one is ended by the idle timeout", "[e2e][beast]") {
    wb::ServerSettings ss;
    ss.idle_timeout = 400ms;
    Rig rig(ss);
    wb::Client live;
    StalledClient silent;
    REQUIRE_FALSE(live.connect(rig.url()));
    REQUIRE_FALSE(silent.client.connect(rig.url()));
    auto silent_id = rig.auth->last().connection_id;
    // One frame parks the silent client's I/O thread: it no longer reads, so it cannot pong.
    rig.server->send(silent_id, wsgate::make_payload(R"({"type":"wake"})"));
    CHECK(eventually([&] { return rig.gw->metrics().ended_heartbeat.load() == 1; }));
    CHECK(live.is_open());
    live.send(R"({"type":"ping"})");
    CHECK(next_of_type(live, "pong"));
    silent.unblock();
}

TEST_CASE("coalesced writes keep every frame whole and in order", "[e2e][beast]") {
    const std::size_t threads = GENERATE(1u, 3u);
    INFO("io threads: " << threads);
    wb::ServerSettings ss;
    ss.queue_capacity = 8192;
    ss.threads = threads;
    Rig rig(ss);
    constexpr int kEvents = 3000;
    std::vector<std::unique_ptr<wb::Client>> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(std::make_unique<wb::Client>());
        REQUIRE_FALSE(clients.back()->connect(rig.url()));
        clients.back()->send(R"({"type":"subscribe","topic":"seq"})");
        REQUIRE(next_of_type(*clients.back(), "ack"));
    }
    // Published faster than the sockets drain, so the queues fill and batches form; sizes vary
    // so that frame headers of every length (7-bit, 16-bit) are mixed in one write.
    std::size_t delivered = 0;
    for (int i = 0; i < kEvents; ++i) {
        std::string pad(static_cast<std::size_t>((i * 37) % 300), 'p');
        if (i % 500 == 0) pad.assign(70'000, 'q');
        auto rep = rig.gw->publish(wsgate::Envelope{"n"}.topic("seq").data({{"i", i}, {"pad", pad}}),
                                   wsgate::Audience::topic("seq"));
        delivered += rep.delivered;
    }
    CHECK(delivered == 3u * kEvents);
    for (auto& c : clients) {
        int expect = 0;
        while (expect < kEvents) {
            auto f = c->receive(10s);
            REQUIRE(f);
            auto j = nlohmann::json::parse(*f, nullptr, false);
            REQUIRE(j.is_object());
            REQUIRE(j["type"] == "n");
            REQUIRE(j["data"]["i"] == expect);
            ++expect;
        }
        c->send(R"({"type":"ping"})");
        CHECK(next_of_type(*c, "pong"));
    }
    CHECK(rig.server->dropped_frames() == 0);
    CHECK(rig.server->coalesced_frames() > 0);  // the batches did form
}

namespace {

// A server whose connections live as long as their session JWTs (3 s here), swept every 50 ms
// the way a host's timer would, with token_expiring sent 2 s before each token's exp.
struct ShortTokenRig {
    wsgate::jwt::SigningKey key = wsgate::jwt::hs256_signing_key("e2e-short-token-secret-0123456789");
    std::shared_ptr<wb::Server> server;
    std::shared_ptr<wsgate::Gateway> gw;
    std::atomic<bool> stop{false};
    std::thread sweeper;

    ShortTokenRig() {
        wb::ServerSettings ss;
        ss.port = 0;
        wsgate::GatewaySettings gs;
        gs.rate_per_second = 0;
        gs.token_expiry_warning = 2s;
        auto auth = std::make_shared<wsgate::DualTokenAuthorizer>(
            wsgate::jwt::Verifier{}.allow(key.verification_key()).require_claim("exp"), std::nullopt);
        server = std::make_shared<wb::Server>(ss);
        gw = std::make_shared<wsgate::Gateway>(gs, std::make_shared<wsgate::InMemoryConnectionStore>(), server, auth);
        server->attach(gw);
        server->start();
        sweeper = std::thread([this] {
            while (!stop.load()) {
                gw->sweep();
                std::this_thread::sleep_for(50ms);
            }
        });
    }
    ~ShortTokenRig() {
        stop = true;
        sweeper.join();
        server->stop();
    }
    // A token for user u1 on device d1 that expires 3 s from now; `exp` receives its expiry.
    std::string token(std::int64_t* exp = nullptr) const {
        const auto e = wsgate::to_unix_seconds(wsgate::SystemClock{}.now()) + 3;
        if (exp != nullptr) *exp = e;
        return wsgate::jwt::sign({{"sub", "u1"}, {"deviceId", "d1"}, {"exp", e}}, key);
    }
    std::string url(const std::string& query = {}) const {
        return "ws://127.0.0.1:" + std::to_string(server->port()) + "/ws" + (query.empty() ? "" : "?" + query);
    }
};

}  // namespace

TEST_CASE("the reconnecting client refreshes short-lived tokens and outlives the first one", "[e2e][beast][expiry]") {
    ShortTokenRig rig;
    std::int64_t first_exp = 0;
    std::atomic<int> tokens_issued{0};
    std::atomic<int> refresh_acks{0};
    // The provider's token replaces the one in the URL (which the server would refuse).
    wb::ReconnectingClient client{rig.url("token=stale.token&room=1")};
    client.set_token_provider([&] {
        ++tokens_issued;
        return rig.token(tokens_issued == 1 ? &first_exp : nullptr);
    });
    client.on_message([&](std::string_view m) {
        auto j = nlohmann::json::parse(m, nullptr, false);
        if (j.is_object() && j.value("type", "") == "ack" && j.value("action", "") == "refresh") ++refresh_acks;
    });
    client.start();
    REQUIRE(eventually([&] { return client.state() == wsgate::client::ConnectionState::connected; }));

    // Two refreshes take the connection well past the first token's exp.
    REQUIRE(eventually([&] { return refresh_acks.load() >= 2; }, 20s));
    REQUIRE(eventually([&] {
        return wsgate::to_unix_seconds(wsgate::SystemClock{}.now()) > first_exp;
    }));
    CHECK(client.state() == wsgate::client::ConnectionState::connected);
    CHECK(client.connections_opened() == 1);
    CHECK_FALSE(client.last_close_code());
    CHECK(rig.gw->local_count() == 1);
    CHECK(rig.gw->metrics().ended_token_expired == 0);
    client.stop();
}

TEST_CASE("without a token provider the server closes the connection with 4001 when the token expires",
          "[e2e][beast][expiry]") {
    ShortTokenRig rig;
    wb::ReconnectingClient client{rig.url("token=" + rig.token())};
    client.start();
    REQUIRE(eventually([&] { return client.state() == wsgate::client::ConnectionState::connected; }));
    REQUIRE(eventually([&] { return client.last_close_code().has_value(); }, 15s));
    CHECK(*client.last_close_code() == static_cast<std::uint16_t>(wsgate::CloseCode::token_expired));
    CHECK(rig.gw->metrics().ended_token_expired == 1);
    client.stop();
}
