// The DynamoDB request layer against dynalite and scripted failures: signing, credentials from
// the environment, retries of throttling and of unprocessed batch items, errors as StoreError,
// table creation, and the `dynamodb://` spec of make_store().

#include "catch.hpp"
#include "dynamo_test_util.hpp"

#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/error.hpp>
#include <wsgate/stores/factory.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::dynalite;
using wsgate::test::dynamo_error;
using wsgate::test::fresh_table;
using wsgate::test::operation_of;
using wsgate::test::RecordingHttp;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(std::string id, std::string user = "u1") {
    ConnectionRecord r;
    r.id = std::move(id);
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = std::move(user);
    r.connected_at = r.last_seen = t0;
    r.expires_at = t0 + 1h;
    r.node_id = "n1";
    return r;
}

/// Sets an environment variable for one scope, restoring what was there.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
    ~ScopedEnv() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

DynamoDbRetry quick_retry(int attempts) { return {attempts, 1ms, 4ms}; }

}  // namespace

TEST_CASE("dynamodb client: requests are signed SigV4 POSTs of the JSON API", "[store][dynamodb][client]") {
    auto http = std::make_shared<RecordingHttp>();
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    s.http = http;
    DynamoDbConnectionStore store(s);
    (void)store.get("c1");
    const auto seen = http->seen();
    REQUIRE(seen.size() == 1);
    const auto& r = seen[0];
    CHECK(r.method == "POST");
    CHECK(r.scheme == "http");
    CHECK(r.host == "127.0.0.1:" + std::to_string(dynalite().port()));
    CHECK(r.path == "/");
    REQUIRE(r.header("Content-Type"));
    CHECK(*r.header("Content-Type") == "application/x-amz-json-1.0");
    CHECK(*r.header("X-Amz-Target") == "DynamoDB_20120810.Query");
    REQUIRE(r.header("Authorization"));
    CHECK(r.header("Authorization")->starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    CHECK(r.header("Authorization")->find("/eu-west-1/dynamodb/aws4_request") != std::string::npos);
    CHECK(r.header("X-Amz-Security-Token") == nullptr);
    const auto body = nlohmann::json::parse(r.body);
    CHECK(body["TableName"] == s.table);
    CHECK(body["ConsistentRead"] == true);
}

TEST_CASE("dynamodb client: credentials and region come from the environment, read for every request", "[store][dynamodb][client]") {
    auto http = std::make_shared<RecordingHttp>();
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    s.http = http;
    s.credentials.reset();
    s.region.clear();
    ScopedEnv region("AWS_REGION", "ap-south-1");
    ScopedEnv fallback("AWS_DEFAULT_REGION", "us-west-2");
    ScopedEnv id("AWS_ACCESS_KEY_ID", nullptr);
    ScopedEnv secret("AWS_SECRET_ACCESS_KEY", nullptr);
    ScopedEnv token("AWS_SESSION_TOKEN", nullptr);
    DynamoDbConnectionStore store(s);

    // No credentials anywhere: a clear StoreError, nothing sent.
    try {
        (void)store.get("c1");
        FAIL("expected StoreError");
    } catch (const StoreError& e) {
        CHECK(e.code() == store_errc::unavailable);
        CHECK(std::string(e.what()).find("AWS_ACCESS_KEY_ID") != std::string::npos);
    }
    CHECK(http->seen().empty());

    // Rotated in after construction (as a Lambda runtime does): picked up by the next request.
    ScopedEnv id2("AWS_ACCESS_KEY_ID", "ASIAROTATED");
    ScopedEnv secret2("AWS_SECRET_ACCESS_KEY", "s3cr3t");
    ScopedEnv token2("AWS_SESSION_TOKEN", "session-token-1");
    store.put(rec("c1"));
    REQUIRE(store.get("c1"));
    const auto last = http->seen().back();
    CHECK(last.header("Authorization")->find("Credential=ASIAROTATED/") != std::string::npos);
    CHECK(last.header("Authorization")->find("/ap-south-1/dynamodb/") != std::string::npos);
    REQUIRE(last.header("X-Amz-Security-Token"));
    CHECK(*last.header("X-Amz-Security-Token") == "session-token-1");
}

TEST_CASE("dynamodb client: throttling and 5xx are retried with backoff, then answered", "[store][dynamodb][client]") {
    auto http = std::make_shared<RecordingHttp>();
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    s.http = http;
    s.retry = quick_retry(5);
    DynamoDbConnectionStore store(s);
    std::atomic<int> failures{0};
    http->intercept = [&](const aws::HttpRequest&) -> std::optional<aws::HttpResponse> {
        switch (failures.fetch_add(1)) {
            case 0: return dynamo_error(400, "ProvisionedThroughputExceededException", "slow down");
            case 1: return dynamo_error(400, "ThrottlingException", "rate exceeded");
            case 2: return dynamo_error(500, "InternalServerError", "oops");
            case 3: return aws::failed_response("connection reset");
            default: return std::nullopt;
        }
    };
    store.put(rec("c1"));
    CHECK(store.stats().throttled_retries == 4);
    http->intercept = nullptr;
    CHECK(store.get("c1"));
    CHECK(store.stats().errors == 0);
}

TEST_CASE("dynamodb client: a closed port is a StoreError after the bounded retries, not a crash", "[store][dynamodb][client]") {
    DynamoDbStoreSettings s;
    s.table = "anything";
    s.endpoint = "http://127.0.0.1:" + std::to_string(test::DynaliteServer::free_port());
    s.credentials = aws::Credentials{"k", "s", {}};
    s.retry = quick_retry(3);
    DynamoDbConnectionStore store(s);
    const auto start = std::chrono::steady_clock::now();
    try {
        store.put(rec("c1"));
        FAIL("expected StoreError");
    } catch (const StoreError& e) {
        CHECK(e.code() == store_errc::unavailable);
        const std::string what = e.what();
        CHECK(what.find("UpdateItem") != std::string::npos);
        CHECK(what.find("NoResponse") != std::string::npos);
        CHECK(what.find("3 attempts") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    const auto st = store.stats();
    CHECK(st.requests == 3);
    CHECK(st.throttled_retries == 2);
    CHECK(st.errors == 1);
    CHECK_THROWS_AS(store.resolve(Audience::topic("x")), StoreError);
    CHECK_THROWS_AS(store.append("x", "{}", t0, {1, 0s}), StoreError);
}

TEST_CASE("dynamodb client: DynamoDB's own errors come through as StoreError with its message", "[store][dynamodb][client]") {
    DynamoDbStoreSettings s;
    s.endpoint = dynalite().endpoint();
    s.credentials = aws::Credentials{"k", "s", {}};
    s.retry = quick_retry(3);

    SECTION("a table name DynamoDB refuses") {
        s.table = "no spaces!";
        DynamoDbConnectionStore store(s);
        try {
            (void)store.get("c1");
            FAIL("expected StoreError");
        } catch (const StoreError& e) {
            CHECK(e.code() == store_errc::invalid_argument);
            const std::string what = e.what();
            CHECK(what.find("ValidationException") != std::string::npos);
            CHECK(what.find("tableName") != std::string::npos);  // dynalite's (DynamoDB's) wording
            CHECK(what.find("no spaces!") != std::string::npos);
        }
        CHECK(store.stats().requests == 1);  // not retried
    }
    SECTION("a table that does not exist") {
        s.table = "never-created";
        DynamoDbConnectionStore store(s);
        try {
            store.put(rec("c1"));
            FAIL("expected StoreError");
        } catch (const StoreError& e) {
            CHECK(std::string(e.what()).find("ResourceNotFoundException") != std::string::npos);
        }
    }
    SECTION("an empty table name or a non-URL endpoint is refused at construction") {
        s.table = "";
        CHECK_THROWS_AS(DynamoDbConnectionStore(s), std::invalid_argument);
        s.table = "fine";
        s.endpoint = "127.0.0.1:8000";
        CHECK_THROWS_AS(DynamoDbConnectionStore(s), std::invalid_argument);
    }
}

TEST_CASE("dynamodb client: unprocessed batch keys and items are sent again until done", "[store][dynamodb][client]") {
    auto http = std::make_shared<RecordingHttp>();
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    s.http = http;
    s.retry = quick_retry(6);
    DynamoDbConnectionStore store(s);
    // The first answer to each batch call hands every request back unprocessed.
    std::atomic<int> writes{0}, gets{0};
    http->intercept = [&](const aws::HttpRequest& r) -> std::optional<aws::HttpResponse> {
        const auto op = operation_of(r);
        const bool first = (op == "BatchWriteItem" && writes.fetch_add(1) == 0) ||
                           (op == "BatchGetItem" && gets.fetch_add(1) == 0);
        if (!first) return std::nullopt;
        const auto body = nlohmann::json::parse(r.body);
        aws::HttpResponse resp;
        resp.status = 200;
        if (op == "BatchWriteItem")
            resp.body = nlohmann::json{{"UnprocessedItems", body["RequestItems"]}}.dump();
        else
            resp.body = nlohmann::json{{"Responses", {{s.table, nlohmann::json::array()}}},
                                       {"UnprocessedKeys", body["RequestItems"]}}.dump();
        return resp;
    };
    store.put(rec("c1"));  // its index items go through BatchWriteItem
    REQUIRE(store.subscribe("c1", "room"));
    CHECK(store.connections_of_user("u1") == std::vector<std::string>{"c1"});  // BatchGetItem
    CHECK(store.stats().unprocessed_retries == 2);

    // Never processed: a StoreError once the attempts run out.
    http->intercept = [&](const aws::HttpRequest& r) -> std::optional<aws::HttpResponse> {
        if (operation_of(r) != "BatchGetItem") return std::nullopt;
        aws::HttpResponse resp;
        resp.status = 200;
        resp.body = nlohmann::json{{"UnprocessedKeys", nlohmann::json::parse(r.body)["RequestItems"]}}.dump();
        return resp;
    };
    try {
        (void)store.subscribers("room");
        FAIL("expected StoreError");
    } catch (const StoreError& e) {
        CHECK(std::string(e.what()).find("BatchGetItem") != std::string::npos);
        CHECK(std::string(e.what()).find("unprocessed") != std::string::npos);
    }
}

TEST_CASE("dynamodb client: create_dynamodb_table creates once and says TTL is unsupported on dynalite", "[store][dynamodb][client]") {
    DynamoDbStoreSettings s;
    s.table = "created-by-test";
    s.endpoint = dynalite().endpoint();
    s.credentials = aws::Credentials{"k", "s", {}};
    const auto first = create_dynamodb_table(s);
    CHECK(first.created);
    CHECK_FALSE(first.ttl_enabled);  // dynalite has no UpdateTimeToLive
    CHECK(first.ttl_status.find("UpdateTimeToLive") != std::string::npos);
    const auto again = create_dynamodb_table(s);
    CHECK_FALSE(again.created);  // ResourceInUseException: it exists, not an error
    DynamoDbConnectionStore store(s);
    store.put(rec("c1"));
    CHECK(store.count() == 0);  // t0 is long past on the system clock: the record reads as expired
    CHECK(store.expire(t0 + 1h).size() == 1);

    s.table = "x";  // too short for DynamoDB
    CHECK_THROWS_AS(create_dynamodb_table(s), StoreError);
}

TEST_CASE("dynamodb spec: make_store builds the store and refuses malformed specs", "[store][dynamodb][factory]") {
    CHECK(store_backend_available("dynamodb"));
    ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDSPEC");
    ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "secret");
    const auto port = std::to_string(dynalite().port());

    auto store = make_store("dynamodb://spec-table?endpoint=http%3A%2F%2F127.0.0.1%3A" + port +
                            "&region=eu-central-1&create=1&timeout_ms=5000");
    REQUIRE(store);
    CHECK(store->shared());
    CHECK(store->supports_streams());
    auto r = rec("c1");
    r.expires_at = std::chrono::system_clock::now() + 1h;
    store->put(r);
    CHECK(store->get("c1"));
    auto* dynamo = dynamic_cast<DynamoDbConnectionStore*>(store.get());
    REQUIRE(dynamo);
    CHECK(dynamo->settings().table == "spec-table");
    CHECK(dynamo->settings().region == "eu-central-1");
    CHECK(dynamo->settings().endpoint == "http://127.0.0.1:" + port);
    // Plain endpoint, no create: the same table.
    auto plain = make_store("dynamodb://spec-table?endpoint=http://127.0.0.1:" + port);
    CHECK(plain->get("c1"));

    for (const char* spec : {"dynamodb://", "dynamodb://ab", "dynamodb://bad name", "dynamodb://t/x",
                             "dynamodb://table?bogus=1", "dynamodb://table?endpoint", "dynamodb://table?=1",
                             "dynamodb://table?region=", "dynamodb://table?endpoint=ftp://h",
                             "dynamodb://table?endpoint=127.0.0.1:8000", "dynamodb://table?endpoint=%zz",
                             "dynamodb://table?endpoint=%4", "dynamodb://table?create=yes",
                             "dynamodb://table?timeout_ms=0", "dynamodb://table?timeout_ms=abc"}) {
        INFO(spec);
        CHECK_THROWS_AS(make_store(spec), std::invalid_argument);
    }
    try {
        (void)make_store("dynamodb://table?bogus=1");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("unknown parameter bogus") != std::string::npos);
    }
    // Plain http:// leaves this machine only when the host says so in one explicit line.
    for (const char* spec : {"dynamodb://table?endpoint=http://dynamodb.example.com",
                             "dynamodb://table?endpoint=http://10.0.0.5:8000", "dynamodb://table?endpoint=http://127.evil.com",
                             "dynamodb://table?endpoint=http://localhost.example.com:8000", "dynamodb://table?insecure=yes"}) {
        INFO(spec);
        CHECK_THROWS_AS(make_store(spec), std::invalid_argument);
    }
    try {
        (void)make_store("dynamodb://table?endpoint=http://dynamodb-local:8000");
        FAIL("plain http to another host was accepted");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("insecure=1") != std::string::npos);
    }
    for (const char* spec : {"dynamodb://table?endpoint=http://dynamodb-local:8000&insecure=1",
                             "dynamodb://table?endpoint=http://localhost:8000", "dynamodb://table?endpoint=http://[::1]:8000",
                             "dynamodb://table?endpoint=http://127.0.0.2:8000", "dynamodb://table?endpoint=https://dynamodb.example.com"}) {
        INFO(spec);
        CHECK_NOTHROW(make_store(spec));
    }
    {
        DynamoDbStoreSettings s;
        s.table = "table";
        s.endpoint = "http://dynamodb-local:8000";
        CHECK_THROWS_AS(DynamoDbConnectionStore{s}, std::invalid_argument);
        s.allow_plain_http = true;
        CHECK_NOTHROW(DynamoDbConnectionStore{s});
    }
    // create=1 against a server that is not there: a StoreError from make_store itself.
    CHECK_THROWS_AS(make_store("dynamodb://nowhere?endpoint=http://127.0.0.1:" +
                               std::to_string(test::DynaliteServer::free_port()) + "&create=1&timeout_ms=500"),
                    StoreError);
}
