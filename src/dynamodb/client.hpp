#pragma once
// The DynamoDB JSON API as wsgate::dynamodb uses it (no API promise): signed POSTs, retries with
// full-jitter backoff, batch loops over unprocessed keys and items, paginated Query and Scan.

#include <wsgate/dynamodb/dynamodb_store.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::dynamodb_detail {

using Json = nlohmann::json;

/// One answer: the response body, or the error DynamoDB named (`error` is the `__type` after '#').
struct Reply {
    Json body;
    std::string error;
    std::string message;
    [[nodiscard]] bool ok() const noexcept { return error.empty(); }
};

/// The error type of a failed conditional write.
inline constexpr std::string_view conditional_failed = "ConditionalCheckFailedException";

/**
 * Sends DynamoDB operations for one table. Thread-safe: no mutable state but atomic counters.
 */
class Client {
public:
    /// Resolves the region and endpoint; @throws std::invalid_argument on an empty table or a bad endpoint.
    explicit Client(const DynamoDbStoreSettings& settings);

    [[nodiscard]] const std::string& table() const noexcept { return table_; }
    [[nodiscard]] const std::string& region() const noexcept { return region_; }

    /**
     * Performs `op` with `body` (TableName is added when absent). Throttling, 5xx and no answer are
     * retried; an error named in `accepted` comes back as a Reply, any other throws StoreError.
     */
    Reply call(std::string_view op, Json body, std::initializer_list<std::string_view> accepted = {});
    /// call() for many bodies at once: sent in parallel, `out[i]` answering `bodies[i]`.
    std::vector<Reply> call_many(std::string_view op, std::vector<Json> bodies,
                                 std::initializer_list<std::string_view> accepted = {});

    /**
     * BatchGetItem (strongly consistent) of `keys`, 100 per call, the calls in parallel, repeating
     * UnprocessedKeys with backoff. Returns the items found, in no particular order.
     */
    std::vector<Json> batch_get(const std::vector<Json>& keys, const std::string& projection = {},
                                const Json& names = nullptr);
    /// BatchWriteItem of `requests` ({"PutRequest": …} / {"DeleteRequest": …}), 25 per call, in
    /// parallel, repeating UnprocessedItems with backoff. Two requests for one key must not share a call.
    void batch_write(const std::vector<Json>& requests);

    /// Query or Scan (`op`), page by page (LastEvaluatedKey); `page` returns false to stop early.
    void paginate(std::string_view op, Json body, const std::function<bool(const Json& page)>& page);

    [[nodiscard]] DynamoDbStats stats() const noexcept;

private:
    void backoff(int attempt) const;
    [[noreturn]] void fail(std::string_view op, const Reply& r);

    std::string table_;
    std::string region_;
    std::string scheme_, host_, path_;
    std::optional<aws::Credentials> credentials_;
    std::shared_ptr<aws::HttpClient> http_;
    DynamoDbRetry retry_;

    std::atomic<std::uint64_t> requests_{0}, throttled_retries_{0}, unprocessed_retries_{0}, errors_{0};
};

// ---- attribute values --------------------------------------------------------------------------

inline Json S(std::string_view s) { return Json{{"S", std::string(s)}}; }
inline Json N(std::int64_t n) { return Json{{"N", std::to_string(n)}}; }
inline Json N(std::uint64_t n) { return Json{{"N", std::to_string(n)}}; }

/// Sets ExpressionAttributeNames of `request` from the `#name` placeholders in its expressions
/// (every attribute name goes through one, so none can clash with a reserved word).
void name_attributes(Json& request);

/// The string attribute `name` of `item`, or `fallback`.
std::string str_attr(const Json& item, const char* name, std::string fallback = {});
/// The number attribute `name` of `item` as an integer, or `fallback`.
std::int64_t num_attr(const Json& item, const char* name, std::int64_t fallback = 0);

}  // namespace wsgate::dynamodb_detail
