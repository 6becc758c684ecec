#pragma once
// Field readers shared by the AWS event parsers (no API promise).

#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/aws/error.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace wsgate::aws::detail {

/// Thrown inside the parsers only; turned into an error value at their boundary.
struct FieldError {
    event_errc code;
    std::string field;
};

const nlohmann::json* field(const nlohmann::json& obj, const char* name);
std::string scalar_text(const nlohmann::json& v);
std::string opt_string(const nlohmann::json& obj, const char* name);
std::string req_string(const nlohmann::json& obj, const char* name);
/// A JSON number as a 64-bit integer (a fraction is cut off). Anything else, NaN, or a value
/// outside the int64 range is FieldError{bad_field_type, name}.
std::int64_t to_int(const nlohmann::json& v, const char* name);
/// The field as to_int(), 0 if absent.
std::int64_t opt_int(const nlohmann::json& obj, const char* name);
std::map<std::string, std::string> string_map(const nlohmann::json& obj, const char* name, bool lower_keys);
std::map<std::string, std::vector<std::string>> multi_map(const nlohmann::json& obj, const char* name, bool lower_keys);
RequestContext parse_context(const nlohmann::json& rc, bool require_connection);
/// The ConnectRequest of a $connect or REQUEST-authorizer event (the last of repeated query values wins).
ConnectRequest connect_request(const RequestContext& context, const std::map<std::string, std::string>& query,
                               const std::map<std::string, std::vector<std::string>>& multi_value_query,
                               const std::map<std::string, std::string>& headers);

}  // namespace wsgate::aws::detail
