#pragma once
/** @file dynamodb_stream.hpp DynamoDB Streams records → plain JSON change records. */

#include <wsgate/aws/apigw_event.hpp>

#include <nlohmann/json.hpp>

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

}  // namespace wsgate::aws
