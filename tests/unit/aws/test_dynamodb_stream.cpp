// DynamoDB Streams records → plain JSON change records.
#include "catch.hpp"

#include <wsgate/aws/dynamodb_stream.hpp>

#include <fstream>
#include <sstream>

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
}
