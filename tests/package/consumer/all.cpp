// Links every wsgate module and touches each one's API, through its third-party library where it
// has one. Exits 0 only if every check holds; prints the first that fails.
#include <wsgate/auth/jwt.hpp>
#include <wsgate/aws/http_client.hpp>
#include <wsgate/aws/sigv4.hpp>
#include <wsgate/beast/server.hpp>
#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/client/reconnect_policy.hpp>
#include <wsgate/redis/redis_store.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>
#include <wsgate/stores/factory.hpp>
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/wsgate.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>

namespace {
int failures = 0;
void check(bool ok, const char* what) {
    if (!ok) {
        ++failures;
        std::cout << "FAILED: " << what << '\n';
    }
}

// The core's publish path on a store built by wsgate::stores (SQLite file through wsgate::sqlite).
void gateway_on(const std::shared_ptr<wsgate::ConnectionStore>& store) {
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings settings;
    settings.router.topic_rules = {{"news", "", "", /*anonymous_read=*/true}};
    wsgate::Gateway gw{settings, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>()};
    wsgate::ConnectRequest req;
    req.connection_id = wsgate::make_connection_id();
    transport->open(req.connection_id);
    auto c = gw.on_connect(req);
    gw.on_message(c.id, R"({"type":"subscribe","topic":"news"})");
    auto report = gw.publish(wsgate::Envelope{"headline"}.data("hello"), wsgate::Audience::topic("news"));
    check(report.delivered == 1, "publish on the SQLite store reaches the subscriber");
}
}  // namespace

int main() {
    // auth (OpenSSL): a signed token verifies; a tampered one does not.
    const std::string secret(32, 'k');
    const std::string token = wsgate::jwt::sign({{"sub", "ann"}}, wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, secret));
    auto verifier = wsgate::jwt::Verifier{}.allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, secret));
    wsgate::jwt::Token decoded;
    check(!verifier.verify(token, decoded) && decoded.claim<std::string>("sub") == "ann", "HS256 token verifies");
    std::string tampered = token;
    tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
    check(static_cast<bool>(verifier.verify(tampered, decoded)), "tampered token is refused");

    // client: backoff without jitter doubles.
    wsgate::client::ReconnectPolicy policy{{}, [] { return std::uint64_t{0}; }};
    auto first = policy.next_delay();
    auto second = policy.next_delay();
    check(first && second && *second == 2 * *first, "reconnect delays double");

    // stream: a change record parses; malformed text is an error value.
    std::error_code ec;
    using namespace std::string_view_literals;
    auto rec = wsgate::parse_change_record(
        R"({"eventName":"INSERT","keys":{"entity_id":"7"},"newImage":{"entity_type":"orders"}})"sv, ec);
    check(rec && rec->entity_type == "orders", "change record parses");
    check(!wsgate::parse_change_record("{"sv, ec) && ec == wsgate::change_stream_errc::malformed_json,
          "malformed change record is refused");

    // stores + sqlite: make_store() builds a SQLite store that the Gateway uses.
    const auto db = std::filesystem::temp_directory_path() / ("wsgate_consumer_" + wsgate::make_connection_id() + ".db");
    check(wsgate::store_backend_available("sqlite") && wsgate::store_backend_available("redis"),
          "stores knows sqlite and redis");
    gateway_on(wsgate::make_store("sqlite:" + db.string()));
    std::filesystem::remove(db);

    // redis (hiredis): nothing listens on port 1, so the store reports `unavailable`.
    try {
        wsgate::RedisStoreSettings rs;
        rs.endpoint.port = 1;
        wsgate::RedisConnectionStore store{rs};
        (void)store.get("nobody");
        check(false, "redis store on a closed port throws");
    } catch (const wsgate::StoreError& e) {
        check(e.code() == wsgate::store_errc::unavailable, "redis store on a closed port is unavailable");
    }

    // aws: SigV4 (OpenSSL) signs; libcurl reports a refused connection as status 0.
    wsgate::aws::HttpRequest request{.method = "POST", .host = "abc.execute-api.eu-west-1.amazonaws.com",
                                     .path = "/prod/@connections/Xyz%3D", .body = "{}"};
    auto sig = wsgate::aws::sign_request(request, {"AKIDEXAMPLE", "secret", ""}, {.region = "eu-west-1"},
                                         wsgate::TimePoint{std::chrono::seconds{1700000000}});
    check(sig.authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/execute-api/"),
          "SigV4 authorization header");
    wsgate::aws::CurlHttpClient http{{.connect_timeout = std::chrono::milliseconds{2000}}};
    auto refused = http.perform({.method = "GET", .scheme = "http", .host = "127.0.0.1:1", .path = "/"});
    check(refused.status == 0 && !refused.error.empty(), "curl reports a refused connection");

    // dynamodb: signed requests through the same client; a closed port is a StoreError.
    try {
        wsgate::DynamoDbStoreSettings ds;
        ds.table = "consumer";
        ds.endpoint = "http://127.0.0.1:1";
        ds.credentials = wsgate::aws::Credentials{"AKIDEXAMPLE", "secret", ""};
        ds.retry.max_attempts = 1;
        wsgate::DynamoDbConnectionStore store{ds};
        (void)store.get("nobody");
        check(false, "dynamodb store on a closed port throws");
    } catch (const wsgate::StoreError& e) {
        check(e.code() == wsgate::store_errc::unavailable, "dynamodb store on a closed port is unavailable");
    }

    // beast: a server starts on a free port and stops.
    wsgate::beast::ServerSettings settings;
    settings.port = 0;
    auto server = std::make_shared<wsgate::beast::Server>(settings);
    server->start();
    check(server->port() != 0, "beast server binds a port");
    server->stop();

    std::cout << "all modules: " << (failures == 0 ? "ok" : "FAILED") << '\n';
    return failures == 0 ? 0 : 1;
}
