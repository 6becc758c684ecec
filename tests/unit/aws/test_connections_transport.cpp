// The @connections transport against a local SigV4-verifying fake endpoint (Python, 127.0.0.1).
#include "catch.hpp"
#include "fake_server.hpp"

#include <wsgate/aws/connections_transport.hpp>

#include <atomic>
#include <thread>

using namespace wsgate;
using namespace wsgate::aws;

namespace {
constexpr const char* secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

ConnectionsSettings settings_for(const test::FakeConnectionsServer& server, std::string key = secret,
                                 std::string token = {}) {
    ConnectionsSettings s;
    s.endpoint = server.endpoint();
    s.region = "us-east-1";
    s.credentials = Credentials{"AKIDEXAMPLE", std::move(key), std::move(token)};
    s.retry_base = std::chrono::milliseconds{5};
    s.retry_max = std::chrono::milliseconds{20};
    return s;
}
}  // namespace

TEST_CASE("POST, GET and DELETE through a verifying endpoint", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret};
    server.add_connections({"RyhQHdzxIAMCKjA=", "conn/with spaces"});
    ConnectionsTransport t{settings_for(server)};

    CHECK(t.send("RyhQHdzxIAMCKjA=", make_payload(R"({"type":"pong"})")) == SendStatus::ok);
    CHECK(t.send("conn/with spaces", make_payload("x")) == SendStatus::ok);
    CHECK(t.send("unknown", make_payload("x")) == SendStatus::gone);
    const auto gone = t.post("unknown-2", "x");
    CHECK(gone.status == SendStatus::gone);
    CHECK(gone.http_status == 410);
    CHECK(gone.error == transport_errc::gone);

    const auto posts = server.posts();
    CHECK(posts.at("RyhQHdzxIAMCKjA=") == nlohmann::json{R"({"type":"pong"})"});
    CHECK(posts.at("conn/with spaces") == nlohmann::json{"x"});

    const auto info = t.get_connection("RyhQHdzxIAMCKjA=");
    CHECK(info.http_status == 200);
    CHECK(info.source_ip == "203.0.113.7");
    CHECK(info.user_agent == "test-agent");
    CHECK(info.connected_at == "2026-01-01T00:00:00.000Z");
    CHECK(t.get_connection("nobody").error == transport_errc::gone);

    t.close("RyhQHdzxIAMCKjA=", CloseCode::normal, "bye");
    t.close("RyhQHdzxIAMCKjA=", CloseCode::normal, "again");  // idempotent
    CHECK(t.send("RyhQHdzxIAMCKjA=", make_payload("x")) == SendStatus::gone);

    const auto stats = server.stats();
    CHECK(stats.at("bad_signatures") == 0);
    CHECK(stats.at("deleted") == nlohmann::json{"RyhQHdzxIAMCKjA="});
}

TEST_CASE("status codes map to their meaning; 429 and 5xx are retried", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret};
    ConnectionsTransport t{settings_for(server)};

    const auto forbidden = t.post("forbidden-1", "x");
    CHECK(forbidden.status == SendStatus::error);
    CHECK(forbidden.error == transport_errc::forbidden);
    CHECK(forbidden.attempts == 1);

    const auto big = t.post("big-1", std::string(1000, 'x'));
    CHECK(big.status == SendStatus::error);
    CHECK(big.error == transport_errc::too_large);

    const auto throttled = t.post("throttle-1", "x");
    CHECK(throttled.status == SendStatus::ok);
    CHECK(throttled.attempts == 2);
    const auto flaky = t.post("flaky-1", "x");
    CHECK(flaky.status == SendStatus::ok);
    CHECK(flaky.attempts == 2);
    CHECK(t.stats().retries == 2);

    auto no_retry = settings_for(server);
    no_retry.max_retries = 0;
    ConnectionsTransport once{no_retry};
    const auto r = once.post("throttle-2", "x");
    CHECK(r.status == SendStatus::error);
    CHECK(r.error == transport_errc::throttled);
    CHECK(r.attempts == 1);
    CHECK(server.stats().at("bad_signatures") == 0);
}

TEST_CASE("a wrong secret is refused by the endpoint", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret};
    server.add_connections({"c1"});
    ConnectionsTransport t{settings_for(server, "not-the-secret")};
    const auto r = t.post("c1", "x");
    CHECK(r.error == transport_errc::forbidden);
    CHECK(server.stats().at("bad_signatures") == 1);
    CHECK(server.posts().empty());
}

TEST_CASE("session tokens are sent and signed", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret, "FQoGZXIvYXdzEXAMPLE"};
    server.add_connections({"c1"});
    ConnectionsTransport with{settings_for(server, secret, "FQoGZXIvYXdzEXAMPLE")};
    CHECK(with.send("c1", make_payload("x")) == SendStatus::ok);
    ConnectionsTransport without{settings_for(server)};
    CHECK(without.post("c1", "x").error == transport_errc::forbidden);
}

TEST_CASE("send_many fans out in parallel and reports each id", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret};
    std::vector<ConnectionId> ids;
    std::vector<ConnectionId> known;
    for (int i = 0; i < 300; ++i) {
        ids.push_back("conn-" + std::to_string(i) + "=");
        if (i % 10 != 3) known.push_back(ids.back());
    }
    ids.push_back("forbidden-x");
    server.add_connections(known);
    auto s = settings_for(server);
    s.curl.max_concurrency = 16;
    ConnectionsTransport t{s};
    std::vector<SendStatus> out(ids.size(), SendStatus::error);
    t.send_many(ids, make_payload(R"({"type":"news"})"), out);
    for (std::size_t i = 0; i < 300; ++i) {
        INFO(ids[i]);
        CHECK(out[i] == (i % 10 == 3 ? SendStatus::gone : SendStatus::ok));
    }
    CHECK(out.back() == SendStatus::error);
    CHECK(server.posts().size() == known.size());
    CHECK(t.stats().delivered == known.size());
    CHECK(t.stats().gone == 30);
    CHECK(t.stats().forbidden == 1);
}

TEST_CASE("an unreachable endpoint fails cleanly", "[aws][transport]") {
    ConnectionsSettings s;
    s.endpoint = "http://127.0.0.1:1/prod";
    s.region = "us-east-1";
    s.credentials = Credentials{"AK", "SK", {}};
    s.max_retries = 1;
    s.retry_base = std::chrono::milliseconds{1};
    ConnectionsTransport t{s};
    const auto r = t.post("c1", "x");
    CHECK(r.status == SendStatus::error);
    CHECK(r.http_status == 0);
    CHECK(r.error == transport_errc::failed);
    CHECK(r.attempts == 2);
    t.close("c1", CloseCode::normal, {});  // best effort, no throw
}

TEST_CASE("many threads send and fan out at once", "[aws][transport][integration]") {
    test::FakeConnectionsServer server{secret};
    std::vector<ConnectionId> ids;
    for (int i = 0; i < 200; ++i) ids.push_back("t" + std::to_string(i));
    server.add_connections(ids);
    auto s = settings_for(server);
    s.curl.max_concurrency = 8;
    ConnectionsTransport t{s};
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 8; ++k) {
        threads.emplace_back([&, k] {
            if (k % 2 == 0) {
                for (int i = k; i < 200; i += 8)
                    if (t.send(ids[i], make_payload("one")) == SendStatus::ok) ++ok;
            } else {
                std::vector<ConnectionId> mine;
                for (int i = k; i < 200; i += 8) mine.push_back(ids[i]);
                std::vector<SendStatus> out(mine.size());
                t.send_many(mine, make_payload("many"), out);
                for (auto st : out) ok += st == SendStatus::ok;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(ok == 200);
    const auto posts = server.posts();
    CHECK(posts.size() == 200);
    CHECK(server.stats().at("bad_signatures") == 0);
}
