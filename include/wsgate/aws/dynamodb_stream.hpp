#pragma once
/** @file dynamodb_stream.hpp DynamoDB Streams records → plain JSON change records. */

#include <wsgate/aws/apigw_event.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace wsgate::aws {

/**
 * Unmarshalls one attribute value (`{"S": "x"}`, `{"N": "1.5"}`, `{"BOOL": true}`, `{"NULL": true}`,
 * `{"M": {…}}`, `{"L": […]}`, `{"SS": […]}`, `{"NS": […]}`, `{"BS": […]}`, `{"B": "base64"}`) into
 * plain JSON. Numbers become integers when integral and in range, else doubles, else (too large)
 * their text; binary stays base64 text. Errors: event_errc::bad_attribute_value. Never throws.
 */
[[nodiscard]] nlohmann::json unmarshall_value(const nlohmann::json& attribute, std::error_code& ec) noexcept;
/// Unmarshalls a map of attribute values (an item, `Keys`, `NewImage`, `OldImage`).
[[nodiscard]] nlohmann::json unmarshall_item(const nlohmann::json& item, std::error_code& ec) noexcept;

/**
 * One stream record, unmarshalled: plain data for a change-stream processor.
 * @par Thread Safety Value type.
 */
struct DynamoDbRecord {
    std::string event_name;      ///< `INSERT`, `MODIFY` or `REMOVE`
    std::string event_id;
    std::string event_source_arn;
    nlohmann::json keys = nlohmann::json::object();
    nlohmann::json new_image;    ///< null when the record has none (REMOVE, KEYS_ONLY)
    nlohmann::json old_image;    ///< null when the record has none (INSERT, NEW_IMAGE)
    std::string sequence_number;
    std::optional<std::int64_t> approximate_creation_time;  ///< Unix seconds
    std::string stream_view_type;

    /// `{"eventName","keys","newImage","oldImage","sequenceNumber","approximateCreationDateTime"}`.
    [[nodiscard]] nlohmann::json to_change_json() const;
};

/// A parsed stream event: the good records, and one note per record that was skipped.
struct StreamParseResult {
    std::vector<DynamoDbRecord> records;
    std::vector<std::string> skipped;  ///< `Records[i]: reason`
    std::error_code error;             ///< set only when the event itself is unusable
};

/// Parses a DynamoDB Streams Lambda event (`{"Records": [...]}`); never throws.
[[nodiscard]] StreamParseResult parse_dynamodb_stream_event(std::string_view json) noexcept;

/**
 * The reply of a DynamoDB-stream Lambda function whose event source mapping has
 * `FunctionResponseTypes: ["ReportBatchItemFailures"]`:
 * `{"batchItemFailures":[{"itemIdentifier":"<SequenceNumber>"}]}` naming the first record that
 * was not processed, or `{"batchItemFailures":[]}` when every record was.
 *
 * Lambda checkpoints just before the reported record and retries from it (with
 * `BisectBatchOnFunctionError` it splits the batch there), so records after it are retried too:
 * they are never reported as done. An empty `itemIdentifier` (a failed record without a
 * `SequenceNumber`, or an unusable event) is Lambda's "the whole batch failed".
 *
 * @par Thread Safety Value type.
 */
struct StreamBatchResponse {
    /// The `SequenceNumber` of the first record not processed; nullopt when all were.
    std::optional<std::string> failed_item;
    std::size_t processed = 0;      ///< records handled (and committed) before the failure
    std::size_t records = 0;        ///< records in the event
    std::string failure;            ///< why `failed_item` failed (`Records[i]: reason`); empty when none
    std::vector<std::string> skipped;  ///< malformed records passed over (StreamBatchSettings::skip_malformed)

    [[nodiscard]] bool ok() const noexcept { return !failed_item.has_value(); }
    /// `{"batchItemFailures":[…]}`, the body the Lambda function returns.
    [[nodiscard]] nlohmann::json to_json() const;
};

/// How handle_dynamodb_stream_event treats records it cannot read.
struct StreamBatchSettings {
    /// false (default): a malformed record is a failed record (retried, then sent to the event
    /// source mapping's on-failure destination once retries are exhausted). true: it is noted in
    /// `skipped` and passed over, so one unreadable record never holds the shard back.
    bool skip_malformed = false;
};

/// Handles one record; throwing marks it failed.
using StreamRecordHandler = std::function<void(const DynamoDbRecord&)>;
/// Delivers what the handler collected for the records handled so far (e.g. flushes a
/// ChangeStreamProcessor); throwing marks all of them failed. May be empty.
using StreamBatchCommit = std::function<void()>;

/**
 * Processes a DynamoDB Streams Lambda event record by record, in stream order, and says which
 * records Lambda must deliver again.
 *
 * Each record is parsed and given to `on_record`. At the first record that is malformed or whose
 * handler throws, processing stops: the records after it are not handled. `commit` then runs once
 * for the records handled before it (not at all when there are none); if it throws, the first
 * handled record is reported instead, as nothing was delivered. A `{"Records":[]}` event succeeds
 * with nothing to do; an event that is not `{"Records":[…]}` fails as a whole (empty identifier).
 *
 * @code
 * auto reply = wsgate::aws::handle_dynamodb_stream_event(event_json,
 *     [&](const wsgate::aws::DynamoDbRecord& r) { ... throw to fail r ... },
 *     [&] { ... deliver ... });
 * return reply.to_json().dump();  // {"batchItemFailures":[...]}
 * @endcode
 *
 * Never throws (a handler's exception is caught and reported).
 * @par Thread Safety Safe; the callbacks run on the calling thread.
 */
[[nodiscard]] StreamBatchResponse handle_dynamodb_stream_event(std::string_view event_json,
                                                               const StreamRecordHandler& on_record,
                                                               const StreamBatchCommit& commit = {},
                                                               const StreamBatchSettings& settings = {}) noexcept;

}  // namespace wsgate::aws
