// The demo server on SQLite keeps its event topics' offsets, epoch and history across kill -9: a
// client that reconnects to the restarted process with `since` gets exactly what it missed.
#include "catch.hpp"
#include "process.hpp"

#include <wsgate/auth/jwt.hpp>
#include <wsgate/beast/client.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/random.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <thread>

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kSessionSecret = "stream-recovery-session-secret-0123456789abcdef";
const std::string kTopic = "events:recovery";

std::string user_token(const std::string& user) {
    const auto now = wsgate::to_unix_seconds(wsgate::SystemClock{}.now());
    return wsgate::jwt::sign({{"sub", user}, {"permissions", {"publish", "read_events"}}, {"iat", now}, {"exp", now + 600}},
                             wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, kSessionSecret));
}

struct Node {
    std::filesystem::path dir;
    std::unique_ptr<wsgate::test::ChildProcess> proc;
    unsigned short port = 0;

    explicit Node(const std::string& db) {
        dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
        std::filesystem::create_directories(dir);
        std::vector<std::string> argv{WSGATE_REALTIME_SERVER, "--port=0", "--port-file=" + (dir / "port").string(),
                                      "--admin-key=k", "--session-secret=" + kSessionSecret,
                                      "--public-secret=p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1", "--store=sqlite:" + db};
        proc = std::make_unique<wsgate::test::ChildProcess>(argv, (dir / "server.log").string());
        port = wsgate::test::wait_for_port_file((dir / "port").string(), 15s);
    }
    ~Node() {
        proc.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::string url(const std::string& user) const {
        return "ws://127.0.0.1:" + std::to_string(port) + "/ws?token=" + user_token(user);
    }
    std::string log() const { return wsgate::test::slurp((dir / "server.log").string()); }
};

/// Every JSON frame that arrives within `quiet` of the previous one (at most `limit` in all),
/// without presence events.
std::vector<json> drain(wsgate::beast::Client& c, std::chrono::milliseconds quiet = 700ms,
                        std::chrono::milliseconds limit = 10s) {
    std::vector<json> out;
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(quiet);
        if (!m) break;
        auto j = json::parse(*m, nullptr, false);
        if (j.is_discarded()) continue;
        const auto type = j.value("type", "");
        if (type == "join" || type == "leave") continue;
        out.push_back(std::move(j));
    }
    return out;
}

/// Receives until a frame with `type` (and, if given, `offset`) arrives.
std::optional<json> receive_until(wsgate::beast::Client& c, const std::string& type, std::uint64_t offset = 0,
                                  std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(100ms);
        if (!m) continue;
        auto j = json::parse(*m, nullptr, false);
        if (j.is_discarded() || j.value("type", "") != type) continue;
        if (offset != 0 && j.value("offset", std::uint64_t{0}) != offset) continue;
        return j;
    }
    return std::nullopt;
}

std::string publish_frame(int n) {
    return json{{"type", "publish"}, {"topic", kTopic}, {"event", "tick"}, {"data", {{"n", n}, {"text", "Grüße \"" + std::to_string(n) + "\""}}}}
        .dump();
}

}  // namespace

TEST_CASE("after kill -9 the restarted demo on SQLite replays exactly the missed events to a client with since",
          "[e2e][sqlite][recovery]") {
    auto db_dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / ("db-" + wsgate::random_token(6));
    std::filesystem::create_directories(db_dir);
    const auto db = (db_dir / "connections.db").string();
    std::string epoch;
    std::uint64_t last_seen = 0;
    {
        Node n(db);
        REQUIRE(n.port != 0);
        INFO(n.log());
        wsgate::beast::Client sub, pub, watcher;
        REQUIRE_FALSE(sub.connect(n.url("sam")));
        REQUIRE_FALSE(pub.connect(n.url("pat")));
        REQUIRE_FALSE(watcher.connect(n.url("wes")));
        REQUIRE_FALSE(sub.send(json{{"type", "subscribe"}, {"topic", kTopic}, {"ref", "s1"}}.dump()));
        auto ack = receive_until(sub, "ack");
        REQUIRE(ack);
        CHECK((*ack)["ref"] == "s1");
        REQUIRE(ack->contains("position"));
        epoch = (*ack)["position"]["epoch"].get<std::string>();
        CHECK_FALSE(epoch.empty());
        CHECK((*ack)["position"]["offset"] == 0);
        REQUIRE_FALSE(watcher.send(json{{"type", "subscribe"}, {"topic", kTopic}}.dump()));
        REQUIRE(receive_until(watcher, "ack"));

        // Three events while the subscriber is there: offsets 1..3 in one epoch.
        for (int i = 1; i <= 3; ++i) REQUIRE_FALSE(pub.send(publish_frame(i)));
        for (std::uint64_t i = 1; i <= 3; ++i) {
            auto got = receive_until(sub, "tick", i);
            REQUIRE(got);
            CHECK((*got)["epoch"] == epoch);
            CHECK((*got)["data"]["n"] == i);
            last_seen = i;
        }
        REQUIRE_FALSE(sub.close());

        // Five more while it is away. The watcher hearing offset 8 means all are stored: a
        // publication is appended (committed) before it is delivered.
        for (int i = 4; i <= 8; ++i) REQUIRE_FALSE(pub.send(publish_frame(i)));
        auto eighth = receive_until(watcher, "tick", 8);
        REQUIRE(eighth);
        CHECK((*eighth)["epoch"] == epoch);

        n.proc->kill(SIGKILL);
    }
    {
        Node n(db);  // the same file, a new process
        REQUIRE(n.port != 0);
        INFO(n.log());
        wsgate::beast::Client sub;
        REQUIRE_FALSE(sub.connect(n.url("sam")));
        REQUIRE_FALSE(sub.send(json{{"type", "subscribe"},
                                    {"topic", kTopic},
                                    {"since", {{"offset", last_seen}, {"epoch", epoch}}},
                                    {"ref", 7}}
                                   .dump()));
        auto frames = drain(sub);
        REQUIRE_FALSE(frames.empty());
        const auto& ack = frames.front();  // the ack comes before any replayed event
        INFO(ack.dump());
        CHECK(ack["type"] == "ack");
        CHECK(ack["action"] == "subscribe");
        CHECK(ack["ref"] == 7);
        CHECK(ack["recovered"] == true);
        CHECK(ack["missed"] == 5);
        CHECK(ack["resumedFrom"] == "since");
        CHECK(ack["position"]["offset"] == 8);
        CHECK(ack["position"]["epoch"] == epoch);
        CHECK_FALSE(ack.contains("reason"));
        REQUIRE(frames.size() == 6);
        for (std::size_t i = 1; i < frames.size(); ++i) {
            INFO(frames[i].dump());
            const int n_expected = static_cast<int>(i) + 3;
            CHECK(frames[i]["type"] == "tick");
            CHECK(frames[i]["offset"] == n_expected);
            CHECK(frames[i]["epoch"] == epoch);
            CHECK(frames[i]["data"]["n"] == n_expected);
            CHECK(frames[i]["data"]["text"] == "Grüße \"" + std::to_string(n_expected) + "\"");
        }

        // Live publications continue the same sequence after the replay.
        wsgate::beast::Client pub;
        REQUIRE_FALSE(pub.connect(n.url("pat")));
        REQUIRE_FALSE(pub.send(publish_frame(9)));
        auto ninth = receive_until(sub, "tick");
        REQUIRE(ninth);
        CHECK((*ninth)["offset"] == 9);
        CHECK((*ninth)["epoch"] == epoch);

        // A position from another epoch is not replayed: the client is told to resync.
        wsgate::beast::Client stranger;
        REQUIRE_FALSE(stranger.connect(n.url("sue")));
        REQUIRE_FALSE(stranger.send(json{{"type", "subscribe"},
                                         {"topic", kTopic},
                                         {"since", {{"offset", 3}, {"epoch", "not-" + epoch}}}}
                                        .dump()));
        auto other = drain(stranger);
        REQUIRE_FALSE(other.empty());
        CHECK(other.front()["type"] == "ack");
        CHECK(other.front()["recovered"] == false);
        CHECK(other.front()["reason"] == "epoch_changed");
        CHECK(other.front()["position"]["offset"] == 9);
        CHECK(other.size() == 1);
    }
    std::error_code ec;
    std::filesystem::remove_all(db_dir, ec);
}
