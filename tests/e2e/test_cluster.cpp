// The demo server with durable and distributed backends: --store sqlite:PATH, and two nodes
// sharing one redis-server (--store redis:// --bus redis://), driven by real WebSocket clients.
#include "catch.hpp"
#include "demo_node.hpp"
#include "redis_server.hpp"

#include <wsgate/auth/jwt.hpp>
#include <wsgate/beast/client.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/random.hpp>
#include <wsgate/redis/redis_store.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

using namespace std::chrono_literals;

namespace {

using Node = wsgate::test::DemoNode;
using wsgate::test::demo_user_token;

/// Receives until a frame of `type` arrives (skipping others) or the time is up.
std::optional<nlohmann::json> receive_type(wsgate::beast::Client& c, const std::string& type,
                                           std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(100ms);
        if (!m) continue;
        auto j = nlohmann::json::parse(*m, nullptr, false);
        if (!j.is_discarded() && j.value("type", "") == type) return j;
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("two demo nodes over one redis-server deliver each other's publishes", "[e2e][redis][cluster]") {
    wsgate::test::RedisServer redis;
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port());
    Node a({"--store", spec, "--bus", spec, "--node-id", "node-a"});
    Node b({"--store", spec, "--bus", spec, "--node-id", "node-b"});
    REQUIRE(a.port != 0);
    REQUIRE(b.port != 0);
    INFO(a.log());
    INFO(b.log());

    wsgate::beast::Client on_a, on_b;
    REQUIRE_FALSE(on_a.connect(a.url() + "?token=" + demo_user_token("ann")));
    REQUIRE_FALSE(on_b.connect(b.url() + "?token=" + demo_user_token("bob")));
    REQUIRE_FALSE(on_a.send(R"({"type":"subscribe","topic":"events:room"})"));
    REQUIRE(receive_type(on_a, "ack"));
    REQUIRE_FALSE(on_b.send(R"({"type":"subscribe","topic":"events:room"})"));
    REQUIRE(receive_type(on_b, "ack"));

    // A client on node B publishes; the subscriber on node A hears it exactly once, from bob.
    REQUIRE_FALSE(on_b.send(R"({"type":"publish","topic":"events:room","event":"chat","data":"from b"})"));
    auto got = receive_type(on_a, "chat");
    REQUIRE(got);
    CHECK((*got)["data"] == "from b");
    CHECK((*got)["from"]["userId"] == "bob");
    CHECK_FALSE(receive_type(on_a, "chat", 500ms));

    // And the other way round.
    REQUIRE_FALSE(on_a.send(R"({"type":"publish","topic":"events:room","event":"chat","data":"from a"})"));
    got = receive_type(on_b, "chat");
    REQUIRE(got);
    CHECK((*got)["data"] == "from a");
}

TEST_CASE("the demo keeps its connection table in SQLite with --store sqlite:PATH", "[e2e][sqlite]") {
    auto db_dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / ("db-" + wsgate::random_token(6));
    std::filesystem::create_directories(db_dir);
    const auto db = (db_dir / "connections.db").string();
    {
        Node n({"--store", "sqlite:" + db});
        REQUIRE(n.port != 0);
        wsgate::beast::Client c;
        REQUIRE_FALSE(c.connect(n.url()));
        REQUIRE_FALSE(c.send(R"({"type":"subscribe","topic":"events:room"})"));
        REQUIRE(receive_type(c, "ack"));
        wsgate::SqliteConnectionStore view{db};
        CHECK(view.count() == 1);
        CHECK(view.subscribers("events:room").size() == 1);
    }
    std::error_code ec;
    std::filesystem::remove_all(db_dir, ec);
}

TEST_CASE("the demo refuses a bad --store spec with a clear error", "[e2e]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
    std::filesystem::create_directories(dir);
    wsgate::test::ChildProcess p({WSGATE_REALTIME_SERVER, "--port", "0", "--store", "mongodb://nope"},
                                 (dir / "log").string());
    CHECK(p.wait(10s) == 2);
    CHECK(wsgate::test::slurp((dir / "log").string()).find("--store mongodb://nope") != std::string::npos);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

TEST_CASE("the demo's flags: values that start with '-', unknown flags and forgotten values", "[e2e]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
    std::filesystem::create_directories(dir);
    const auto run = [&](std::vector<std::string> args, const std::string& name) {
        args.insert(args.begin(), WSGATE_REALTIME_SERVER);
        wsgate::test::ChildProcess p(args, (dir / name).string());
        const int rc = p.wait(10s);
        return std::pair{rc, wsgate::test::slurp((dir / name).string())};
    };
    // A secret starting with '-' (one random base64url token in 64) is a value, both as the
    // next argument and after '='; the server starts and writes its port.
    for (const auto& form : {std::vector<std::string>{"--admin-key", "-k-e-y"},
                             std::vector<std::string>{"--admin-key=--k-e-y"}}) {
        std::vector<std::string> args{WSGATE_REALTIME_SERVER, "--port=0", "--port-file=" + (dir / "port").string()};
        args.insert(args.end(), form.begin(), form.end());
        std::filesystem::remove(dir / "port");
        wsgate::test::ChildProcess p(args, (dir / "started.log").string());
        CHECK(wsgate::test::wait_for_port_file((dir / "port").string(), 10s) != 0);
        p.kill(SIGTERM);
        CHECK(p.wait(10s) == 0);
    }
    auto [rc_unknown, log_unknown] = run({"--port=0", "--admni-key=x"}, "unknown.log");
    CHECK(rc_unknown == 2);
    CHECK(log_unknown.find("unknown option: --admni-key") != std::string::npos);
    // "--admin-key --port 0" would otherwise take "--port" as the key and leave "0" dangling.
    auto [rc_swallow, log_swallow] = run({"--admin-key", "--port", "0"}, "swallow.log");
    CHECK(rc_swallow == 2);
    CHECK(log_swallow.find("missing value for --admin-key") != std::string::npos);
    auto [rc_switch, log_switch] = run({"--allow-anonymous=no"}, "switch.log");
    CHECK(rc_switch == 2);
    CHECK(log_switch.find("--allow-anonymous takes no value") != std::string::npos);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

TEST_CASE("the demo refuses a session or public secret shorter than 32 bytes at start", "[e2e]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
    std::filesystem::create_directories(dir);
    const std::string ok_secret(32, 'k'), short_secret(31, 's');
    for (const bool short_session : {true, false}) {
        const std::string flag = short_session ? "--session-secret" : "--public-secret";
        INFO(flag);
        wsgate::test::ChildProcess p({WSGATE_REALTIME_SERVER, "--port=0",
                                      "--session-secret=" + (short_session ? short_secret : ok_secret),
                                      "--public-secret=" + (short_session ? ok_secret : short_secret)},
                                     (dir / "short.log").string());
        CHECK(p.wait(10s) == 2);
        const auto log = wsgate::test::slurp((dir / "short.log").string());
        CHECK(log.find(flag) != std::string::npos);
        CHECK(log.find("at least 32") != std::string::npos);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

// ---- restart hygiene: kill -9, then a restart or a surviving node cleans up ----------------

namespace {

// A session secret for user tokens in these tests; given after Node's own, so it wins.
const std::string kSessionSecret = "restart-hygiene-session-secret-0123456789abcdef";

std::string user_url(const Node& n, const std::string& user) {
    const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch() + std::chrono::hours{1})
                         .count();
    const auto token = wsgate::jwt::sign({{"sub", user}, {"permissions", {"read_events"}}, {"exp", exp}},
                                         wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, kSessionSecret));
    return n.url() + "?token=" + token;
}

/// Opens `count` connections for `user` on `n`; each must be accepted.
std::vector<std::unique_ptr<wsgate::beast::Client>> connect_user(const Node& n, const std::string& user, int count) {
    std::vector<std::unique_ptr<wsgate::beast::Client>> out;
    for (int i = 0; i < count; ++i) {
        auto c = std::make_unique<wsgate::beast::Client>();
        INFO("connection " << i);
        REQUIRE_FALSE(c->connect(user_url(n, user)));
        out.push_back(std::move(c));
    }
    return out;
}

/// Polls `done` every 50 ms for up to `limit`; its last answer.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(50ms);
    }
    return true;
}

wsgate::RedisConnectionStore redis_view(const wsgate::test::RedisServer& redis) {
    wsgate::RedisStoreSettings s;
    s.endpoint.port = redis.port();
    return wsgate::RedisConnectionStore{s};
}

}  // namespace

TEST_CASE("after kill -9 on SQLite the restarted demo clears its old records, so the per-user cap lets the user back in", "[e2e][sqlite][restart]") {
    auto db_dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / ("db-" + wsgate::random_token(6));
    std::filesystem::create_directories(db_dir);
    const auto db = (db_dir / "connections.db").string();
    const std::vector<std::string> args{"--store=sqlite:" + db, "--session-secret=" + kSessionSecret};
    std::string first_node;
    {
        Node n(args);
        REQUIRE(n.port != 0);
        INFO(n.log());
        // The default per-user cap is 20: the user fills it, the 21st connection is refused.
        auto clients = connect_user(n, "u1", 20);
        wsgate::beast::Client extra;
        CHECK(extra.connect(user_url(n, "u1")));
        wsgate::SqliteConnectionStore view{db};
        REQUIRE(view.connections_of_user("u1").size() == 20);
        first_node = view.get(view.connections_of_user("u1").front())->node_id;
        CHECK(first_node.rfind("sqlite-", 0) == 0);  // the id kept in the file
        n.proc->kill(SIGKILL);
        CHECK(view.connections_of_user("u1").size() == 20);  // the dead process left them behind
    }
    {
        Node n(args);
        REQUIRE(n.port != 0);
        INFO(n.log());
        CHECK(n.log().find("node: " + first_node) != std::string::npos);
        wsgate::SqliteConnectionStore view{db};
        CHECK(view.connections_of_user("u1").empty());
        CHECK(view.count() == 0);
        auto clients = connect_user(n, "u1", 20);
        CHECK(view.connections_of_user("u1").size() == 20);
    }
    std::error_code ec;
    std::filesystem::remove_all(db_dir, ec);
}

TEST_CASE("a demo node on Redis restarted after kill -9 under the same --node-id starts without its old records", "[e2e][redis][restart]") {
    wsgate::test::RedisServer redis;
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port());
    const std::vector<std::string> args{"--store=" + spec, "--bus=" + spec, "--node-id=node-a",
                                        "--session-secret=" + kSessionSecret};
    auto view = redis_view(redis);
    {
        Node a(args);
        REQUIRE(a.port != 0);
        INFO(a.log());
        auto clients = connect_user(a, "u1", 20);
        for (auto& c : clients) {
            REQUIRE_FALSE(c->send(R"({"type":"subscribe","topic":"events:room"})"));
            REQUIRE(receive_type(*c, "ack"));
        }
        REQUIRE(view.connections_of_user("u1").size() == 20);
        REQUIRE(view.subscribers("events:room").size() == 20);
        a.proc->kill(SIGKILL);
    }
    CHECK(view.connections_of_user("u1").size() == 20);  // nobody has cleaned up yet
    Node a(args);
    REQUIRE(a.port != 0);
    INFO(a.log());
    // Cleared before the node listens, well inside its (default, 30 s) lease.
    CHECK(view.connections_of_user("u1").empty());
    CHECK(view.subscribers("events:room").empty());
    CHECK(view.count() == 0);
    auto clients = connect_user(a, "u1", 20);
    CHECK(view.connections_of_user("u1").size() == 20);
}

TEST_CASE("when a demo node on Redis is killed with -9, a surviving node reaps its records within the lease", "[e2e][redis][restart]") {
    wsgate::test::RedisServer redis;
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port());
    auto node_args = [&](const std::string& id) {
        return std::vector<std::string>{"--store=" + spec, "--bus=" + spec, "--node-id=" + id, "--node-lease-ms=1000",
                                        "--session-secret=" + kSessionSecret};
    };
    Node b(node_args("node-b"));
    REQUIRE(b.port != 0);
    INFO(b.log());
    auto view = redis_view(redis);
    wsgate::beast::Client listener;  // on the surviving node, in the topic the dead node's clients were in
    REQUIRE_FALSE(listener.connect(b.url()));
    REQUIRE_FALSE(listener.send(R"({"type":"subscribe","topic":"events:room"})"));
    REQUIRE(receive_type(listener, "ack"));
    {
        Node a(node_args("node-a"));
        REQUIRE(a.port != 0);
        INFO(a.log());
        auto clients = connect_user(a, "u1", 20);
        for (auto& c : clients) {
            REQUIRE_FALSE(c->send(R"({"type":"subscribe","topic":"events:room"})"));
            REQUIRE(receive_type(*c, "ack"));
        }
        REQUIRE(view.connections_of_user("u1").size() == 20);
        REQUIRE(view.subscribers("events:room").size() == 21);
        a.proc->kill(SIGKILL);
    }
    // The bound is the lease (1 s) plus the sweep interval (1 s); allow generously for a loaded machine.
    CHECK(eventually([&] { return view.connections_of_user("u1").empty() && view.subscribers("events:room").size() == 1; },
                     20s));
    CHECK(view.count() == 1);
    // The user is no longer counted against the cap: all 20 connections fit on the survivor.
    auto clients = connect_user(b, "u1", 20);
    CHECK(view.connections_of_user("u1").size() == 20);
}


// ---- delivery guarantees across nodes: recovery from history, presence -------------------

namespace {

std::string device_token(const std::string& user, const std::string& device) {
    const auto now = wsgate::to_unix_seconds(wsgate::SystemClock{}.now());
    return wsgate::jwt::sign({{"sub", user},
                              {"deviceId", device},
                              {"permissions", {"publish", "read_events"}},
                              {"iat", now},
                              {"exp", now + 600}},
                             wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, wsgate::test::demo_session_secret()));
}

std::unique_ptr<wsgate::beast::Client> join(const Node& n, const std::string& user, const std::string& device,
                                            const std::string& topic) {
    auto c = std::make_unique<wsgate::beast::Client>();
    REQUIRE_FALSE(c->connect(n.url() + "?token=" + device_token(user, device)));
    REQUIRE_FALSE(c->send(nlohmann::json{{"type", "subscribe"}, {"topic", topic}}.dump()));
    REQUIRE(receive_type(*c, "ack"));
    return c;
}

std::optional<nlohmann::json> presence_of(wsgate::beast::Client& c, const std::string& topic) {
    if (c.send(nlohmann::json{{"type", "presence"}, {"topic", topic}}.dump())) return std::nullopt;
    return receive_type(c, "presence");
}

/// The users a presence reply lists, sorted.
std::vector<std::string> users_in(const nlohmann::json& p) {
    std::vector<std::string> out;
    for (const auto& m : p.value("members", nlohmann::json::array())) out.push_back(m.value("userId", ""));
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("a client that left node A resumes on node B with exactly the events it missed", "[e2e][redis][cluster][recovery]") {
    wsgate::test::RedisServer redis;
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port());
    Node a({"--store", spec, "--bus", spec, "--node-id", "node-a"});
    Node b({"--store", spec, "--bus", spec, "--node-id", "node-b"});
    REQUIRE(a.port != 0);
    REQUIRE(b.port != 0);
    INFO(a.log());
    INFO(b.log());

    auto publisher = join(b, "pat", "pat-phone", "events:feed");
    // Something is in the stream before the reader comes, so its ack carries the epoch.
    REQUIRE_FALSE(publisher->send(R"({"type":"publish","topic":"events:feed","event":"tick","data":-1})"));
    REQUIRE(receive_type(*publisher, "ack"));
    std::uint64_t last_offset = 0;
    std::string epoch;
    {
        wsgate::beast::Client reader;
        REQUIRE_FALSE(reader.connect(a.url() + "?token=" + device_token("rea", "rea-laptop")));
        REQUIRE_FALSE(reader.send(R"({"type":"subscribe","topic":"events:feed","ref":1})"));
        auto ack = receive_type(reader, "ack");
        REQUIRE(ack);
        CHECK((*ack)["ref"] == 1);
        REQUIRE(ack->contains("position"));
        REQUIRE_FALSE(publisher->send(R"({"type":"publish","topic":"events:feed","event":"tick","data":0})"));
        REQUIRE(receive_type(*publisher, "ack"));
        auto first = receive_type(reader, "tick");
        REQUIRE(first);
        last_offset = (*first)["offset"].get<std::uint64_t>();
        epoch = (*first)["epoch"].get<std::string>();
        CHECK(epoch == (*ack)["position"]["epoch"]);
        CHECK(last_offset == (*ack)["position"]["offset"].get<std::uint64_t>() + 1);
    }  // the reader disconnects

    constexpr int missed = 5;
    for (int i = 1; i <= missed; ++i) {
        REQUIRE_FALSE(publisher->send(
            nlohmann::json{{"type", "publish"}, {"topic", "events:feed"}, {"event", "tick"}, {"data", i}}.dump()));
        auto published = receive_type(*publisher, "ack");  // in the stream before the next one is sent
        REQUIRE(published);
        CHECK((*published)["offset"] == last_offset + static_cast<std::uint64_t>(i));
    }

    wsgate::beast::Client back;
    REQUIRE_FALSE(back.connect(b.url() + "?token=" + device_token("rea", "rea-laptop")));
    REQUIRE_FALSE(back.send(nlohmann::json{{"type", "subscribe"},
                                           {"topic", "events:feed"},
                                           {"since", {{"offset", last_offset}, {"epoch", epoch}}}}
                                .dump()));
    // The ack comes first, then the missed events in order, each once, then live ones.
    auto m = back.receive(5s);
    REQUIRE(m);
    auto ack = nlohmann::json::parse(*m);
    REQUIRE(ack["type"] == "ack");
    CHECK(ack["recovered"] == true);
    CHECK(ack["missed"] == missed);
    CHECK(ack["resumedFrom"] == "since");
    CHECK(ack["position"]["epoch"] == epoch);
    CHECK(ack["position"]["offset"] == last_offset + missed);
    for (int i = 1; i <= missed; ++i) {
        auto got = receive_type(back, "tick");
        REQUIRE(got);
        CHECK((*got)["data"] == i);
        CHECK((*got)["offset"] == last_offset + static_cast<std::uint64_t>(i));
        CHECK((*got)["epoch"] == epoch);
    }
    REQUIRE_FALSE(publisher->send(R"({"type":"publish","topic":"events:feed","event":"tick","data":"live"})"));
    auto live = receive_type(back, "tick");
    REQUIRE(live);
    CHECK((*live)["data"] == "live");
    CHECK((*live)["offset"] == last_offset + missed + 1);
    CHECK_FALSE(receive_type(back, "tick", 300ms));

    // An epoch the stream never had is refused, and nothing is replayed.
    wsgate::beast::Client stale;
    REQUIRE_FALSE(stale.connect(a.url() + "?token=" + device_token("rea", "rea-tablet")));
    REQUIRE_FALSE(stale.send(R"({"type":"subscribe","topic":"events:feed","since":{"offset":1,"epoch":"gone"}})"));
    auto refused = receive_type(stale, "ack");
    REQUIRE(refused);
    CHECK((*refused)["recovered"] == false);
    CHECK((*refused)["reason"] == "epoch_changed");
    CHECK_FALSE(receive_type(stale, "tick", 300ms));
}

TEST_CASE("presence spans the nodes, join and leave cross them, and a killed node's members vanish", "[e2e][redis][cluster][presence]") {
    wsgate::test::RedisServer redis;
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port());
    auto node_args = [&](const std::string& id) {
        return std::vector<std::string>{"--store", spec, "--bus", spec, "--node-id", id, "--node-lease-ms=2000"};
    };
    Node a(node_args("node-a"));
    REQUIRE(a.port != 0);
    INFO(a.log());
    auto ann = join(a, "ann", "ann-phone", "events:lobby");
    {
        Node b(node_args("node-b"));
        REQUIRE(b.port != 0);
        INFO(b.log());
        auto bob = join(b, "bob", "bob-laptop", "events:lobby");
        auto joined = receive_type(*ann, "join");
        REQUIRE(joined);
        CHECK((*joined)["topic"] == "events:lobby");
        CHECK((*joined)["member"]["userId"] == "bob");
        CHECK((*joined)["member"]["deviceId"] == "bob-laptop");

        for (auto* asker : {ann.get(), bob.get()}) {
            auto p = presence_of(*asker, "events:lobby");
            REQUIRE(p);
            CHECK((*p)["connections"] == 2);
            CHECK((*p)["users"] == 2);
            CHECK(users_in(*p) == std::vector<std::string>{"ann", "bob"});
        }

        // A second connection of carl on node B comes and goes: node A's member hears both.
        {
            auto carl = join(b, "carl", "carl-phone", "events:lobby");
            auto j = receive_type(*ann, "join");
            REQUIRE(j);
            CHECK((*j)["member"]["userId"] == "carl");
            auto p = presence_of(*ann, "events:lobby");
            REQUIRE(p);
            CHECK((*p)["connections"] == 3);
        }
        auto left = receive_type(*ann, "leave");
        REQUIRE(left);
        CHECK((*left)["member"]["userId"] == "carl");

        b.proc->kill(SIGKILL);  // bob's connection is never closed by its node
    }
    // Within the lease (2 s) plus a sweep (1 s); generous for a loaded machine.
    CHECK(eventually(
        [&] {
            auto p = presence_of(*ann, "events:lobby");
            return p && users_in(*p) == std::vector<std::string>{"ann"} && (*p)["connections"] == 1;
        },
        20s));
}

// ---- Redis outages: local delivery, honest publish answers, re-registration ---------------

namespace {

struct HttpAnswer {
    int status = 0;
    std::string text;     // the body as sent
    nlohmann::json body;  // the body parsed, or discarded if not JSON
};

/// One HTTP/1.1 request over a fresh loopback socket (Connection: close), read to EOF.
HttpAnswer http(unsigned short port, const std::string& method, const std::string& path, const std::string& body = {},
                const std::string& extra_headers = {}) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{20, 0};  // a node blocked on a frozen Redis answers within its command timeouts
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string raw;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        const std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                                extra_headers + "Content-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
            char buf[4096];
            for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    HttpAnswer out;
    if (raw.rfind("HTTP/1.1 ", 0) == 0) out.status = std::atoi(raw.c_str() + 9);
    if (auto at = raw.find("\r\n\r\n"); at != std::string::npos) {
        out.text = raw.substr(at + 4);
        out.body = nlohmann::json::parse(out.text, nullptr, false);
    }
    return out;
}

HttpAnswer publish_event(const Node& n, const std::string& topic, int seq) {
    return http(n.port, "POST", "/publish",
                nlohmann::json{{"topic", topic}, {"type", "tick"}, {"data", {{"seq", seq}}}}.dump(), "X-Admin-Key: k\r\n");
}

std::string health_of(const Node& n) {
    const auto h = http(n.port, "GET", "/healthz");
    return h.status == 200 && h.body.is_object() ? h.body.value("status", "") : "";
}

/// The `seq`s of the tick events that arrive within `quiet` of each other (after at most `limit`), and their epochs.
struct Received {
    std::vector<int> seqs;
    std::vector<std::string> epochs;
};
Received drain_ticks(wsgate::beast::Client& c, std::size_t expect, std::chrono::milliseconds limit) {
    Received r;
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(r.seqs.size() >= expect ? 300ms : 100ms);
        if (!m) {
            if (r.seqs.size() >= expect) break;  // and nothing more within 300 ms
            continue;
        }
        auto j = nlohmann::json::parse(*m, nullptr, false);
        if (j.is_discarded() || j.value("type", "") != "tick") continue;
        r.seqs.push_back(j["data"].value("seq", -1));
        r.epochs.push_back(j.value("epoch", ""));
    }
    return r;
}

/// The value of a Prometheus counter line `name value`, or -1.
long long counter_of(const std::string& text, const std::string& name) {
    const auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::atoll(text.c_str() + at + name.size() + 2);
}

std::vector<int> range(int from, int to) {
    std::vector<int> v;
    for (int i = from; i < to; ++i) v.push_back(i);
    return v;
}

}  // namespace

TEST_CASE("a Redis outage: the publishing node keeps delivering to its own clients, publish answers 503, and "
          "both nodes re-register once Redis is back",
          "[e2e][redis][cluster][outage]") {
    const bool frozen = GENERATE(false, true);  // killed and restarted empty, or SIGSTOPped and resumed
    INFO((frozen ? "Redis frozen with SIGSTOP" : "Redis killed and restarted empty"));
    wsgate::test::RedisServer redis;
    // Short command timeouts so a frozen Redis costs the demo's single I/O thread little; short
    // leases so an outage longer than the lease is part of the test.
    const std::string spec = "redis://127.0.0.1:" + std::to_string(redis.port()) + "?timeout_ms=300";
    Node a({"--store", spec, "--bus", spec, "--node-id", "node-a", "--node-lease-ms=2000"});
    Node b({"--store", spec, "--bus", spec, "--node-id", "node-b", "--node-lease-ms=2000"});
    REQUIRE(a.port != 0);
    REQUIRE(b.port != 0);
    INFO(a.log());
    INFO(b.log());
    const std::string topic = "events:outage";
    wsgate::beast::Client on_a, on_b;
    REQUIRE_FALSE(on_a.connect(a.url() + "?token=" + demo_user_token("ann")));
    REQUIRE_FALSE(on_b.connect(b.url() + "?token=" + demo_user_token("bob")));
    for (auto* c : {&on_a, &on_b}) {
        REQUIRE_FALSE(c->send(nlohmann::json{{"type", "subscribe"}, {"topic", topic}}.dump()));
        REQUIRE(receive_type(*c, "ack"));
    }
    REQUIRE(health_of(a) == "ok");

    // Redis up: 200 with both subscribers as targets, and both get everything.
    for (int i = 0; i < 5; ++i) {
        const auto r = publish_event(a, topic, i);
        CHECK(r.status == 200);
        CHECK(r.body.value("success", false));
        CHECK(r.body.value("targets", 0) == 1);  // this node's share; node B delivers its own
    }
    const auto up_a = drain_ticks(on_a, 5, 10s);
    CHECK(up_a.seqs == range(0, 5));
    CHECK(drain_ticks(on_b, 5, 10s).seqs == range(0, 5));
    const std::string first_epoch = up_a.epochs.empty() ? "" : up_a.epochs.front();
    CHECK_FALSE(first_epoch.empty());

    // Redis down: node A still delivers to its own subscriber, from its own index, and says the
    // publish was degraded: the topic's history could not append it (and the bus may have lost
    // it). The audience itself never needed Redis, so that is not among the reasons.
    if (frozen) redis.pause();
    else redis.stop();
    for (int i = 5; i < 10; ++i) {
        const auto r = publish_event(a, topic, i);
        CHECK(r.status == 503);
        CHECK_FALSE(r.body.value("success", true));
        CHECK(r.body.value("degraded", false));
        CHECK(r.body.value("reason", "").find("history_unavailable") != std::string::npos);
        CHECK(r.body.value("reason", "").find("store_unavailable") == std::string::npos);
        CHECK(r.body.value("delivered", 0) == 1);
    }
    CHECK(drain_ticks(on_a, 5, 10s).seqs == range(5, 10));
    CHECK(health_of(a) == "degraded");
    CHECK(eventually([&] { return health_of(b) == "degraded"; }, 10s));
    if (!frozen) CHECK(drain_ticks(on_b, 1, 1s).seqs.empty());  // the bus is gone with Redis
    // Longer than the 2 s leases: the nodes must notice their registration is gone or reaped.
    std::this_thread::sleep_for(3s);

    if (frozen) redis.resume();
    else redis.start();  // empty: no persistence
    // The documented bound: a sweep (1 s) after Redis answers, plus the bus's reconnect backoff;
    // health turns "ok" five seconds after the last failure.
    CHECK(eventually([&] { return health_of(a) == "ok" && health_of(b) == "ok"; }, 30s));
    // A frozen Redis executes, once thawed, the PUBLISHes that were already in its socket
    // buffers: node B may receive some of the outage's events late. Skip whatever came.
    if (frozen) drain_ticks(on_b, 0, 1s);
    drain_ticks(on_a, 0, 500ms);

    // Redis back: the same connections, never reconnected, get everything exactly once.
    for (int i = 10; i < 15; ++i) {
        const auto r = publish_event(a, topic, i);
        CHECK(r.status == 200);
        CHECK(r.body.value("success", false));
        CHECK(r.body.value("targets", 0) == 1);  // this node's share; node B delivers its own
    }
    const auto back_a = drain_ticks(on_a, 5, 10s);
    CHECK(back_a.seqs == range(10, 15));
    CHECK(drain_ticks(on_b, 5, 10s).seqs == range(10, 15));
    // Redis lost the stream when it restarted empty: a new epoch tells clients to resync.
    if (!frozen && !back_a.epochs.empty()) CHECK(back_a.epochs.front() != first_epoch);
    if (frozen && !back_a.epochs.empty()) CHECK(back_a.epochs.front() == first_epoch);

    // The metrics count what happened.
    const auto metrics = http(a.port, "GET", "/metrics").text;
    INFO(metrics);
    CHECK(counter_of(metrics, "wsgate_degraded_publishes_total") == 5);
    // Every delivery came from the node's index: none had to fall back.
    CHECK(counter_of(metrics, "wsgate_local_fallbacks_total") == 0);
    // Restarted empty, Redis lost node A's lease and records. (A frozen Redis may still run A's
    // timed-out lease renewal when thawed, and then nothing was lost.)
    if (!frozen) {
        CHECK(counter_of(metrics, "wsgate_reregistrations_total") >= 1);
        CHECK(counter_of(metrics, "wsgate_reregistered_connections_total") >= 1);
    }
}

TEST_CASE("a SQLite file another process keeps locked: delivery continues, publish answers 503 history_unavailable",
          "[e2e][sqlite][outage]") {
    auto db_dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / ("db-" + wsgate::random_token(6));
    std::filesystem::create_directories(db_dir);
    const auto db = (db_dir / "connections.db").string();
    {
        Node n({"--store=sqlite:" + db});
        REQUIRE(n.port != 0);
        INFO(n.log());
        const std::string topic = "events:disk";
        wsgate::beast::Client c;
        REQUIRE_FALSE(c.connect(n.url() + "?token=" + demo_user_token("ann")));
        REQUIRE_FALSE(c.send(nlohmann::json{{"type", "subscribe"}, {"topic", topic}}.dump()));
        REQUIRE(receive_type(c, "ack"));
        auto first = publish_event(n, topic, 0);
        CHECK(first.status == 200);
        CHECK(first.body.value("offset", 0) == 1);
        auto got = receive_type(c, "tick");
        REQUIRE(got);
        CHECK((*got)["offset"] == 1);
        const auto epoch = got->value("epoch", "");
        CHECK_FALSE(epoch.empty());

        {
            // Another process (Python's own sqlite3 module) takes the write lock and keeps it:
            // every write of the node now fails after its busy_timeout (5 s).
            const auto lock_log = (db_dir / "locker.log").string();
            wsgate::test::ChildProcess locker({"/usr/bin/python3", "-c",
                                               "import sqlite3, sys, time\n"
                                               "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                                               "c.execute('BEGIN EXCLUSIVE')\n"
                                               "print('locked', flush=True)\n"
                                               "time.sleep(120)\n",
                                               db},
                                              lock_log);
            REQUIRE(eventually([&] { return wsgate::test::slurp(lock_log).find("locked") != std::string::npos; }, 10s));
            auto locked = publish_event(n, topic, 1);
            CHECK(locked.status == 503);
            CHECK(locked.body.value("reason", "") == "history_unavailable");
            CHECK(locked.body.value("delivered", 0) == 1);
            got = receive_type(c, "tick", 15s);
            REQUIRE(got);
            CHECK((*got)["data"]["seq"] == 1);
            CHECK_FALSE(got->contains("offset"));  // live, without a position: it is not in history
            CHECK(health_of(n) == "degraded");
        }
        // The lock is gone: the stream goes on where it was, nothing in the file was damaged.
        auto after = publish_event(n, topic, 2);
        CHECK(after.status == 200);
        CHECK(after.body.value("offset", 0) == 2);
        got = receive_type(c, "tick", 10s);
        REQUIRE(got);
        CHECK((*got)["offset"] == 2);
        CHECK(got->value("epoch", "") == epoch);
    }
    std::error_code ec;
    std::filesystem::remove_all(db_dir, ec);
}
