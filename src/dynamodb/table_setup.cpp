// create_dynamodb_table(): CreateTable, wait for ACTIVE, UpdateTimeToLive on `ttl`.

#include "client.hpp"

#include <wsgate/error.hpp>

#include <thread>

namespace wsgate {

using dynamodb_detail::Json;

DynamoDbTableSetup create_dynamodb_table(const DynamoDbStoreSettings& settings, Duration deadline) {
    dynamodb_detail::Client client(settings);
    DynamoDbTableSetup out;
    auto created = client.call("CreateTable",
                               Json{{"AttributeDefinitions",
                                     {{{"AttributeName", "pk"}, {"AttributeType", "S"}},
                                      {{"AttributeName", "sk"}, {"AttributeType", "S"}}}},
                                    {"KeySchema",
                                     {{{"AttributeName", "pk"}, {"KeyType", "HASH"}},
                                      {{"AttributeName", "sk"}, {"KeyType", "RANGE"}}}},
                                    {"BillingMode", "PAY_PER_REQUEST"}},
                               {"ResourceInUseException"});
    out.created = created.ok();

    const auto until = std::chrono::steady_clock::now() + deadline;
    auto pause = std::chrono::milliseconds{50};
    while (true) {
        auto d = client.call("DescribeTable", Json::object());
        const auto status = d.body.value("Table", Json::object()).value("TableStatus", "");
        if (status == "ACTIVE") break;
        if (std::chrono::steady_clock::now() + pause > until)
            throw StoreError(store_errc::unavailable, "wsgate dynamodb (table " + settings.table +
                                                          "): not ACTIVE within the deadline (status " + status + ")");
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds{2000});
    }

    auto ttl = client.call("UpdateTimeToLive",
                           Json{{"TimeToLiveSpecification", {{"AttributeName", "ttl"}, {"Enabled", true}}}},
                           {"UnknownOperationException", "ValidationException"});
    if (ttl.ok()) {
        out.ttl_enabled = true;
        out.ttl_status = "ENABLING";
    } else if (ttl.error == "ValidationException" && ttl.message.find("already enabled") != std::string::npos) {
        out.ttl_enabled = true;
        out.ttl_status = "ENABLED";
    } else if (ttl.error == "UnknownOperationException") {
        out.ttl_status = "the server does not support UpdateTimeToLive (" + ttl.error +
                         "): expired records are removed by sweeps only";
    } else {
        out.ttl_status = ttl.error + ": " + ttl.message;
    }
    return out;
}

}  // namespace wsgate
