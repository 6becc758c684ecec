// The demo server with its connection table in DynamoDB (--store dynamodb://TABLE?endpoint=…),
// against dynalite started by the test, driven by real WebSocket clients.
#include "catch.hpp"
#include "dynalite_server.hpp"
#include "process.hpp"

#include <wsgate/auth/jwt.hpp>
#include <wsgate/beast/client.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/random.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <thread>

using namespace std::chrono_literals;

namespace {

const std::string kSessionSecret = "dynamodb-session-secret-0123456789abcdef";

// A user session token the demo accepts, with its "publish" and read permissions.
std::string user_token(const std::string& user) {
    const auto now = wsgate::to_unix_seconds(wsgate::SystemClock{}.now());
    return wsgate::jwt::sign({{"sub", user}, {"permissions", {"publish", "read_events"}}, {"iat", now}, {"exp", now + 600}},
                             wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, kSessionSecret));
}

struct Demo {
    std::filesystem::path dir;
    std::unique_ptr<wsgate::test::ChildProcess> proc;
    unsigned short port = 0;

    explicit Demo(std::vector<std::string> extra) {
        dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
        std::filesystem::create_directories(dir);
        std::vector<std::string> argv{WSGATE_REALTIME_SERVER, "--port=0", "--port-file=" + (dir / "port").string(),
                                      "--allow-anonymous", "--admin-key=k",
                                      "--session-secret=" + kSessionSecret,
                                      "--public-secret=p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        proc = std::make_unique<wsgate::test::ChildProcess>(argv, (dir / "server.log").string());
        port = wsgate::test::wait_for_port_file((dir / "port").string(), 15s);
    }
    ~Demo() {
        proc.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    [[nodiscard]] std::string url() const { return "ws://127.0.0.1:" + std::to_string(port) + "/ws"; }
    [[nodiscard]] std::string log() const { return wsgate::test::slurp((dir / "server.log").string()); }
};

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

wsgate::DynamoDbConnectionStore table_view(const wsgate::test::DynaliteServer& dynalite, const std::string& table) {
    wsgate::DynamoDbStoreSettings s;
    s.table = table;
    s.endpoint = dynalite.endpoint();
    s.region = "us-east-1";
    s.credentials = wsgate::aws::Credentials{"test", "test", ""};
    return wsgate::DynamoDbConnectionStore{s};
}

}  // namespace

TEST_CASE("the demo keeps its connection table in DynamoDB with --store dynamodb://", "[e2e][dynamodb]") {
    wsgate::test::DynaliteServer dynalite;
    const std::string table = "demo-" + wsgate::random_token(4);
    // dynalite accepts any signature; the demo reads its credentials from the usual variables.
    ::setenv("AWS_ACCESS_KEY_ID", "test", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
    Demo demo({"--store", "dynamodb://" + table + "?endpoint=" + dynalite.endpoint() + "&region=us-east-1&create=1"});
    REQUIRE(demo.port != 0);
    INFO(demo.log());

    wsgate::beast::Client listener, talker;
    REQUIRE_FALSE(listener.connect(demo.url() + "?token=" + user_token("ann")));
    REQUIRE_FALSE(talker.connect(demo.url() + "?token=" + user_token("bob")));
    REQUIRE_FALSE(listener.send(R"({"type":"subscribe","topic":"events:room"})"));
    REQUIRE(receive_type(listener, "ack"));

    // The table holds both connections and the subscription, as another process sees it.
    auto view = table_view(dynalite, table);
    CHECK(view.count() == 2);
    CHECK(view.subscribers("events:room").size() == 1);

    // A publish reaches the subscriber, resolved through the table, and nobody else.
    REQUIRE_FALSE(talker.send(R"({"type":"publish","topic":"events:room","event":"chat","data":"hello"})"));
    auto got = receive_type(listener, "chat");
    REQUIRE(got);
    CHECK((*got)["data"] == "hello");
    CHECK((*got)["from"]["userId"] == "bob");
    CHECK_FALSE(receive_type(talker, "chat", 300ms));

    // A closed socket leaves the table.
    listener.close();
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (view.count() != 1 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
    CHECK(view.count() == 1);
    CHECK(view.subscribers("events:room").empty());
}

TEST_CASE("the demo refuses a DynamoDB spec it cannot use, with the reason", "[e2e][dynamodb]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
    std::filesystem::create_directories(dir);
    wsgate::test::ChildProcess p({WSGATE_REALTIME_SERVER, "--port", "0", "--store", "dynamodb://t?colour=blue"},
                                 (dir / "log").string());
    CHECK(p.wait(10s) == 2);
    const auto log = wsgate::test::slurp((dir / "log").string());
    CHECK(log.find("colour") != std::string::npos);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
