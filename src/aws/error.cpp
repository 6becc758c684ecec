// Error categories of the AWS adapter.
#include <wsgate/aws/error.hpp>
#include <wsgate/detail/error_category.hpp>

namespace wsgate::aws {
namespace {

std::string describe_event(event_errc e) {
    switch (e) {
        case event_errc::not_json: return "event is not valid JSON";
        case event_errc::not_an_object: return "event is not a JSON object";
        case event_errc::missing_field: return "event lacks a required field";
        case event_errc::bad_field_type: return "event field has the wrong type";
        case event_errc::unknown_event_type: return "unknown event type";
        case event_errc::bad_base64: return "body is not valid base64";
        case event_errc::bad_attribute_value: return "invalid DynamoDB attribute value";
    }
    return "unknown event error";
}

std::string describe_config(config_errc e) {
    switch (e) {
        case config_errc::no_credentials: return "no AWS credentials given or in the environment";
        case config_errc::no_region: return "no AWS region given or in the environment";
        case config_errc::bad_endpoint: return "invalid @connections endpoint URL";
    }
    return "unknown configuration error";
}

}  // namespace

const std::error_category& event_category() noexcept {
    return wsgate::detail::error_category_of<event_errc, &describe_event>("wsgate.aws.event");
}
const std::error_category& config_category() noexcept {
    return wsgate::detail::error_category_of<config_errc, &describe_config>("wsgate.aws.config");
}

}  // namespace wsgate::aws
