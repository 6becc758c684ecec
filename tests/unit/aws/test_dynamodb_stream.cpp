// DynamoDB Streams records → plain JSON change records.
#include "catch.hpp"

#include <wsgate/aws/dynamodb_stream.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace wsgate::aws;
using nlohmann::json;

namespace {
std::string stream_event() {
    std::ifstream in{std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/data/events/dynamodb_stream.json"};
    REQUIRE(in.good());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
}  // namespace

TEST_CASE("a stream event becomes change records", "[aws][dynamodb]") {
    const auto result = parse_dynamodb_stream_event(stream_event());
    CHECK_FALSE(result.error);
    REQUIRE(result.records.size() == 3);
    REQUIRE(result.skipped.size() == 1);
    CHECK(result.skipped[0].rfind("Records[3]: ", 0) == 0);

    const auto& ins = result.records[0];
    CHECK(ins.event_name == "INSERT");
    CHECK(ins.keys == json{{"entity_id", "stream-001"}, {"metric", "viewers"}});
    CHECK(ins.old_image.is_null());
    const auto& img = ins.new_image;
    CHECK(img.at("value") == 1532);
    CHECK(img.at("value").is_number_integer());
    CHECK(img.at("ratio") == 0.25);
    CHECK(img.at("live") == true);
    CHECK(img.at("note").is_null());
    CHECK(img.at("tags") == json{"music", "live"});
    CHECK(img.at("samples") == json{1, 2.5, -3});
    CHECK(img.at("thumb") == "aGVsbG8=");
    CHECK(img.at("chunks") == json{"AAE=", "AgM="});
    CHECK(img.at("dims") == json{{"w", 1920}, {"h", 1080}, {"codec", "h264"}});
    CHECK(img.at("history") == json::array({10, "x", {{"ok", false}}}));
    CHECK(img.at("huge") == "123456789012345678901234567890");
    CHECK(ins.sequence_number == "111000000000000000001");
    CHECK(ins.approximate_creation_time == std::optional<std::int64_t>{1700000200});
    CHECK(ins.stream_view_type == "NEW_AND_OLD_IMAGES");

    const auto& mod = result.records[1];
    CHECK(mod.event_name == "MODIFY");
    CHECK(mod.old_image.at("value") == 1532);
    CHECK(mod.new_image.at("value") == 1600);

    const auto rem = result.records[2].to_change_json();
    CHECK(rem.at("eventName") == "REMOVE");
    CHECK(rem.at("newImage").is_null());
    CHECK(rem.at("oldImage").at("value") == 1600);
    CHECK(rem.at("keys").at("metric") == "viewers");
    CHECK(rem.at("sequenceNumber") == "111000000000000000003");
    CHECK(rem.at("approximateCreationDateTime") == 1700000300);
}

TEST_CASE("attribute values are checked", "[aws][dynamodb]") {
    std::error_code ec;
    for (const char* bad : {R"({"S":1})", R"({"N":"abc"})", R"({"N":"1.2.3"})", R"({"N":""})", R"({"BOOL":"true"})",
                            R"({"NULL":1})", R"({"M":[]})", R"({"L":{}})", R"({"SS":[1]})", R"({"NS":["x"]})",
                            R"({"X":"y"})", R"({})", R"({"S":"a","N":"1"})", R"("S")", R"({"L":[{"Q":1}]})"}) {
        INFO(bad);
        const auto v = unmarshall_value(json::parse(bad), ec);
        CHECK(ec == event_errc::bad_attribute_value);
        CHECK(v.is_null());
    }
    CHECK(unmarshall_value(json::parse(R"({"N":"-1e3"})"), ec) == -1000.0);
    CHECK_FALSE(ec);
    CHECK(unmarshall_value(json::parse(R"({"N":"1e400"})"), ec) == "1e400");
    CHECK_FALSE(ec);
    // Nesting beyond the limit is refused instead of recursing without bound.
    json deep = json{{"S", "x"}};
    for (int i = 0; i < 200; ++i) deep = json{{"L", json::array({deep})}};
    (void)unmarshall_value(deep, ec);
    CHECK(ec == event_errc::bad_attribute_value);
    CHECK(unmarshall_item(json::parse(R"({"a":{"S":"b"}})"), ec) == json{{"a", "b"}});
}

TEST_CASE("unusable stream events", "[aws][dynamodb]") {
    CHECK(parse_dynamodb_stream_event("nope").error == event_errc::not_json);
    CHECK(parse_dynamodb_stream_event("[]").error == event_errc::not_an_object);
    CHECK(parse_dynamodb_stream_event("{}").error == event_errc::missing_field);
    CHECK(parse_dynamodb_stream_event(R"({"Records":{}})").error == event_errc::bad_field_type);
    const auto r = parse_dynamodb_stream_event(
        R"({"Records":[1,{"eventName":"DROP","dynamodb":{}},{"eventName":"INSERT"},{"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":"x"}},{"eventName":"INSERT","dynamodb":{}}]})");
    CHECK_FALSE(r.error);
    CHECK(r.skipped.size() == 4);
    REQUIRE(r.records.size() == 1);
    CHECK(r.records[0].keys == json::object());
    // A creation time beyond the int64 range (or 2^63, or a huge unsigned) skips the record with
    // a clear reason instead of converting out of range.
    const auto big = parse_dynamodb_stream_event(
        R"({"Records":[{"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":1.7e67}},)"
        R"({"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":9223372036854775808.0}},)"
        R"({"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":18446744073709551615}},)"
        R"({"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":1700000000.5}}]})");
    CHECK_FALSE(big.error);
    CHECK(big.skipped.size() == 3);
    REQUIRE(big.records.size() == 1);
    CHECK(big.records[0].approximate_creation_time == std::optional<std::int64_t>{1700000000});
}

// ---- ReportBatchItemFailures -----------------------------------------------------------------

namespace {
json stream_record(const std::string& seq, const std::string& id, int value) {
    return json{{"eventID", "ev-" + seq},
                {"eventName", "INSERT"},
                {"eventSource", "aws:dynamodb"},
                {"dynamodb",
                 {{"Keys", {{"entity_id", {{"S", id}}}}},
                  {"NewImage", {{"entity_id", {{"S", id}}}, {"value", {{"N", std::to_string(value)}}}}},
                  {"SequenceNumber", seq},
                  {"StreamViewType", "NEW_AND_OLD_IMAGES"}}}};
}
std::string event_of(std::vector<json> records) { return json{{"Records", std::move(records)}}.dump(); }
}  // namespace

TEST_CASE("a batch that succeeds reports no failures", "[aws][dynamodb][batch]") {
    std::vector<std::string> seen;
    int commits = 0;
    const auto reply = handle_dynamodb_stream_event(
        event_of({stream_record("100", "a", 1), stream_record("200", "b", 2), stream_record("300", "c", 3)}),
        [&](const DynamoDbRecord& r) { seen.push_back(r.sequence_number); }, [&] { ++commits; });
    CHECK(reply.ok());
    CHECK(reply.processed == 3);
    CHECK(reply.records == 3);
    CHECK(seen == std::vector<std::string>{"100", "200", "300"});
    CHECK(commits == 1);
    CHECK(reply.to_json() == json::parse(R"({"batchItemFailures":[]})"));

    // An empty batch: nothing to do, nothing to commit, nothing failed.
    const auto empty = handle_dynamodb_stream_event(R"({"Records":[]})", [](const DynamoDbRecord&) {},
                                                    [&] { ++commits; });
    CHECK(empty.ok());
    CHECK(commits == 1);
    CHECK(empty.to_json().at("batchItemFailures").empty());
}

TEST_CASE("a failing record in the middle is reported and the records after it are not handled",
          "[aws][dynamodb][batch]") {
    std::vector<std::string> seen;
    std::vector<std::string> committed;
    std::vector<std::string> pending;
    const auto reply = handle_dynamodb_stream_event(
        event_of({stream_record("100", "a", 1), stream_record("200", "b", 2), stream_record("300", "boom", 3),
                  stream_record("400", "d", 4), stream_record("500", "boom", 5)}),
        [&](const DynamoDbRecord& r) {
            seen.push_back(r.sequence_number);
            if (r.keys.at("entity_id") == "boom") throw std::runtime_error("downstream refused");
            pending.push_back(r.sequence_number);
        },
        [&] {
            committed.insert(committed.end(), pending.begin(), pending.end());
            pending.clear();
        });
    CHECK_FALSE(reply.ok());
    REQUIRE(reply.failed_item);
    CHECK(*reply.failed_item == "300");  // the first failed record, not the last
    CHECK(reply.processed == 2);
    CHECK(reply.failure.find("Records[2]: handler failed: downstream refused") != std::string::npos);
    CHECK(seen == std::vector<std::string>{"100", "200", "300"});  // 400 and 500 are left for the retry
    CHECK(committed == std::vector<std::string>{"100", "200"});    // what came before is delivered once
    CHECK(reply.to_json() == json::parse(R"({"batchItemFailures":[{"itemIdentifier":"300"}]})"));

    // The first record failing: nothing handled, nothing committed.
    int commits = 0;
    const auto first = handle_dynamodb_stream_event(
        event_of({stream_record("100", "boom", 1), stream_record("200", "b", 2)}),
        [&](const DynamoDbRecord& r) {
            if (r.keys.at("entity_id") == "boom") throw 42;  // not a std::exception
        },
        [&] { ++commits; });
    REQUIRE(first.failed_item);
    CHECK(*first.failed_item == "100");
    CHECK(first.processed == 0);
    CHECK(commits == 0);
}

TEST_CASE("malformed records fail by default, or are skipped when asked", "[aws][dynamodb][batch]") {
    json bad_value = stream_record("200", "b", 2);
    bad_value["dynamodb"]["NewImage"]["value"] = json{{"N", "not-a-number"}};
    json bad_name = stream_record("300", "c", 3);
    bad_name["eventName"] = "DROP";
    const auto event = event_of({stream_record("100", "a", 1), bad_value, stream_record("250", "x", 0), bad_name,
                                 stream_record("400", "d", 4)});

    std::vector<std::string> seen;
    auto record = [&](const DynamoDbRecord& r) { seen.push_back(r.sequence_number); };
    const auto strict = handle_dynamodb_stream_event(event, record);
    REQUIRE(strict.failed_item);
    CHECK(*strict.failed_item == "200");
    CHECK(strict.failure.find("Records[1]:") == 0);
    CHECK(strict.failure.find("NewImage") != std::string::npos);
    CHECK(seen == std::vector<std::string>{"100"});

    seen.clear();
    StreamBatchSettings lenient;
    lenient.skip_malformed = true;
    const auto skipping = handle_dynamodb_stream_event(event, record, {}, lenient);
    CHECK(skipping.ok());
    CHECK(skipping.processed == 3);
    CHECK(seen == std::vector<std::string>{"100", "250", "400"});
    REQUIRE(skipping.skipped.size() == 2);
    CHECK(skipping.skipped[0].find("Records[1]:") == 0);
    CHECK(skipping.skipped[1].find("Records[3]:") == 0);

    // A failed record without a sequence number cannot be named: the whole batch fails (empty identifier).
    const auto anonymous = handle_dynamodb_stream_event(event_of({stream_record("100", "a", 1), json(7)}), record);
    REQUIRE(anonymous.failed_item);
    CHECK(anonymous.failed_item->empty());
    CHECK(anonymous.to_json() == json::parse(R"({"batchItemFailures":[{"itemIdentifier":""}]})"));
}

TEST_CASE("a failed commit reports the first handled record; an unusable event fails whole",
          "[aws][dynamodb][batch]") {
    const auto reply = handle_dynamodb_stream_event(
        event_of({stream_record("100", "a", 1), stream_record("200", "b", 2)}), [](const DynamoDbRecord&) {},
        [] { throw std::runtime_error("store unavailable"); });
    REQUIRE(reply.failed_item);
    CHECK(*reply.failed_item == "100");
    CHECK(reply.processed == 0);
    CHECK(reply.failure == "commit failed: store unavailable");

    for (const char* bad : {"nope", "[]", "{}", R"({"Records":{}})"}) {
        INFO(bad);
        int calls = 0;
        const auto r = handle_dynamodb_stream_event(bad, [&](const DynamoDbRecord&) { ++calls; }, [&] { ++calls; });
        REQUIRE(r.failed_item);
        CHECK(r.failed_item->empty());
        CHECK(r.failure.rfind("event: ", 0) == 0);
        CHECK(calls == 0);
    }
}
