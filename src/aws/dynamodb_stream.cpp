// DynamoDB Streams records: attribute-value unmarshalling into plain JSON change records.
#include <wsgate/aws/dynamodb_stream.hpp>

#include "json_fields.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace wsgate::aws {

using nlohmann::json;

namespace {

constexpr int max_depth = 64;

bool number_from_text(const std::string& s, json& out) {
    if (s.empty() || s.size() > 64) return false;
    const bool integral = s.find_first_of(".eE") == std::string::npos;
    if (integral) {
        std::int64_t v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec == std::errc{} && p == s.data() + s.size()) {
            out = v;
            return true;
        }
        if (ec == std::errc::result_out_of_range) {  // DynamoDB numbers reach 38 digits: keep the text
            out = s;
            return true;
        }
        return false;
    }
    char* end = nullptr;
    errno = 0;
    const double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return false;
    if (errno == ERANGE || !std::isfinite(d)) out = s;
    else out = d;
    return true;
}

json unmarshall(const json& av, int depth, std::error_code& ec);

json unmarshall_map(const json& m, int depth, std::error_code& ec) {
    json out = json::object();
    if (!m.is_object()) {
        ec = event_errc::bad_attribute_value;
        return out;
    }
    for (const auto& [k, v] : m.items()) {
        out[k] = unmarshall(v, depth + 1, ec);
        if (ec) return json::object();
    }
    return out;
}

json unmarshall(const json& av, int depth, std::error_code& ec) {
    if (depth > max_depth || !av.is_object() || av.size() != 1) {
        ec = event_errc::bad_attribute_value;
        return nullptr;
    }
    const auto first = av.begin();
    const std::string& type = first.key();
    const json& v = first.value();
    auto bad = [&]() -> json {
        ec = event_errc::bad_attribute_value;
        return nullptr;
    };
    if (type == "S" || type == "B") return v.is_string() ? v : bad();
    if (type == "N") {
        json n;
        return v.is_string() && number_from_text(v.get<std::string>(), n) ? n : bad();
    }
    if (type == "BOOL") return v.is_boolean() ? v : bad();
    if (type == "NULL") return v.is_boolean() ? json(nullptr) : bad();
    if (type == "M") {
        json m = unmarshall_map(v, depth, ec);
        return ec ? json(nullptr) : m;
    }
    if (type == "L") {
        if (!v.is_array()) return bad();
        json out = json::array();
        for (const auto& e : v) {
            out.push_back(unmarshall(e, depth + 1, ec));
            if (ec) return nullptr;
        }
        return out;
    }
    if (type == "SS" || type == "BS" || type == "NS") {
        if (!v.is_array()) return bad();
        json out = json::array();
        for (const auto& e : v) {
            if (!e.is_string()) return bad();
            if (type == "NS") {
                json n;
                if (!number_from_text(e.get<std::string>(), n)) return bad();
                out.push_back(std::move(n));
            } else {
                out.push_back(e);
            }
        }
        return out;
    }
    return bad();
}

}  // namespace

json unmarshall_value(const json& attribute, std::error_code& ec) noexcept {
    ec.clear();
    try {
        return unmarshall(attribute, 0, ec);
    } catch (...) {
        ec = event_errc::bad_attribute_value;
        return nullptr;
    }
}

json unmarshall_item(const json& item, std::error_code& ec) noexcept {
    ec.clear();
    try {
        return unmarshall_map(item, 0, ec);
    } catch (...) {
        ec = event_errc::bad_attribute_value;
        return json::object();
    }
}

json DynamoDbRecord::to_change_json() const {
    json j{{"eventName", event_name},
           {"keys", keys},
           {"newImage", new_image},
           {"oldImage", old_image},
           {"sequenceNumber", sequence_number}};
    j["approximateCreationDateTime"] = approximate_creation_time ? json(*approximate_creation_time) : json(nullptr);
    return j;
}

namespace {

// One stream record, or a detail::FieldError naming what is wrong with it.
DynamoDbRecord parse_record(const json& rec) {
    if (!rec.is_object()) throw detail::FieldError{event_errc::not_an_object, "record"};
    DynamoDbRecord r;
    r.event_name = detail::req_string(rec, "eventName");
    if (r.event_name != "INSERT" && r.event_name != "MODIFY" && r.event_name != "REMOVE")
        throw detail::FieldError{event_errc::unknown_event_type, r.event_name};
    r.event_id = detail::opt_string(rec, "eventID");
    r.event_source_arn = detail::opt_string(rec, "eventSourceARN");
    const json* d = detail::field(rec, "dynamodb");
    if (!d) throw detail::FieldError{event_errc::missing_field, "dynamodb"};
    if (!d->is_object()) throw detail::FieldError{event_errc::not_an_object, "dynamodb"};
    std::error_code ec;
    if (const json* k = detail::field(*d, "Keys")) {
        r.keys = unmarshall_item(*k, ec);
        if (ec) throw detail::FieldError{event_errc::bad_attribute_value, "Keys"};
    }
    if (const json* n = detail::field(*d, "NewImage")) {
        r.new_image = unmarshall_item(*n, ec);
        if (ec) throw detail::FieldError{event_errc::bad_attribute_value, "NewImage"};
    }
    if (const json* o = detail::field(*d, "OldImage")) {
        r.old_image = unmarshall_item(*o, ec);
        if (ec) throw detail::FieldError{event_errc::bad_attribute_value, "OldImage"};
    }
    r.sequence_number = detail::opt_string(*d, "SequenceNumber");
    if (const json* t = detail::field(*d, "ApproximateCreationDateTime")) {
        r.approximate_creation_time = detail::to_int(*t, "ApproximateCreationDateTime");
    }
    r.stream_view_type = detail::opt_string(*d, "StreamViewType");
    return r;
}

// The record's `dynamodb.SequenceNumber` when it has a usable one, else empty.
std::string sequence_number_of(const json& rec) {
    if (!rec.is_object()) return {};
    auto d = rec.find("dynamodb");
    if (d == rec.end() || !d->is_object()) return {};
    auto sn = d->find("SequenceNumber");
    return sn != d->end() && sn->is_string() ? sn->get<std::string>() : std::string{};
}

std::string reason_of(const detail::FieldError& fe) {
    return make_error_code(fe.code).message() + " (" + fe.field + ")";
}

// The event's `Records` array, or nullptr with `ec` set.
const json* records_of(const json& ev, std::error_code& ec) {
    if (ev.is_discarded()) {
        ec = event_errc::not_json;
        return nullptr;
    }
    if (!ev.is_object()) {
        ec = event_errc::not_an_object;
        return nullptr;
    }
    auto it = ev.find("Records");
    if (it == ev.end()) {
        ec = event_errc::missing_field;
        return nullptr;
    }
    if (!it->is_array()) {
        ec = event_errc::bad_field_type;
        return nullptr;
    }
    return &*it;
}

}  // namespace

StreamParseResult parse_dynamodb_stream_event(std::string_view text) noexcept {
    StreamParseResult out;
    try {
        const auto ev = json::parse(text, nullptr, false);
        const json* records = records_of(ev, out.error);
        if (!records) return out;
        std::size_t i = 0;
        for (const auto& rec : *records) {
            const std::string where = "Records[" + std::to_string(i++) + "]: ";
            try {
                out.records.push_back(parse_record(rec));
            } catch (const detail::FieldError& fe) {
                out.skipped.push_back(where + reason_of(fe));
            }
        }
    } catch (const std::exception& e) {
        out.error = event_errc::bad_field_type;
        out.skipped.emplace_back(e.what());
    }
    return out;
}

json StreamBatchResponse::to_json() const {
    json failures = json::array();
    if (failed_item) failures.push_back(json{{"itemIdentifier", *failed_item}});
    return json{{"batchItemFailures", std::move(failures)}};
}

StreamBatchResponse handle_dynamodb_stream_event(std::string_view text, const StreamRecordHandler& on_record,
                                                 const StreamBatchCommit& commit,
                                                 const StreamBatchSettings& settings) noexcept {
    StreamBatchResponse out;
    try {
        const auto ev = json::parse(text, nullptr, false);
        std::error_code ec;
        const json* records = records_of(ev, ec);
        if (!records) {
            out.failed_item = std::string{};  // Lambda: the whole batch failed
            out.failure = "event: " + ec.message();
            return out;
        }
        out.records = records->size();
        std::string first_handled;  // the sequence number to report if the commit fails
        std::size_t handled = 0;
        for (std::size_t i = 0; i < records->size(); ++i) {
            const json& raw = (*records)[i];
            const std::string where = "Records[" + std::to_string(i) + "]: ";
            std::string failure;
            try {
                const DynamoDbRecord r = parse_record(raw);
                try {
                    if (on_record) on_record(r);
                } catch (const std::exception& e) {
                    failure = where + "handler failed: " + e.what();
                } catch (...) {
                    failure = where + "handler failed";
                }
            } catch (const detail::FieldError& fe) {
                if (settings.skip_malformed) {
                    out.skipped.push_back(where + reason_of(fe));
                    continue;
                }
                failure = where + reason_of(fe);
            }
            if (!failure.empty()) {
                out.failed_item = sequence_number_of(raw);
                out.failure = std::move(failure);
                break;
            }
            if (handled++ == 0) first_handled = sequence_number_of(raw);
        }
        if (handled > 0 && commit) {
            try {
                commit();
            } catch (const std::exception& e) {
                out.failed_item = first_handled;
                out.failure = std::string{"commit failed: "} + e.what();
                return out;
            } catch (...) {
                out.failed_item = first_handled;
                out.failure = "commit failed";
                return out;
            }
        }
        out.processed = handled;
    } catch (const std::exception& e) {
        out.processed = 0;
        out.failed_item = std::string{};
        out.failure = e.what();
    }
    return out;
}

}  // namespace wsgate::aws
