// Change-stream batching: parse plain-JSON change records, coalesce per item, publish per topic.
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/detail/error_category.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsgate {

std::string_view to_string(ChangeEventType t) noexcept {
    switch (t) {
        case ChangeEventType::insert: return "INSERT";
        case ChangeEventType::modify: return "MODIFY";
        case ChangeEventType::remove: break;
    }
    return "REMOVE";
}

std::optional<ChangeEventType> change_event_type_from_string(std::string_view s) noexcept {
    if (s == "INSERT") return ChangeEventType::insert;
    if (s == "MODIFY") return ChangeEventType::modify;
    if (s == "REMOVE") return ChangeEventType::remove;
    return std::nullopt;
}

namespace {

std::string describe_change_stream(change_stream_errc e) {
    switch (e) {
        case change_stream_errc::malformed_json: return "change record is not valid JSON";
        case change_stream_errc::not_an_object: return "change record must be a JSON object";
        case change_stream_errc::bad_event_name: return "eventName must be INSERT, MODIFY or REMOVE";
        case change_stream_errc::bad_keys: return "keys must be a non-empty object";
        case change_stream_errc::bad_image: return "newImage and oldImage must be objects";
        case change_stream_errc::missing_image: return "INSERT and MODIFY need a newImage";
        case change_stream_errc::bad_sequence_number: return "sequenceNumber must be a decimal number";
        case change_stream_errc::bad_timestamp:
            return "approximateCreationDateTime must be epoch seconds or ISO-8601 UTC";
        case change_stream_errc::bad_entity_type: return "entity type is missing, empty or contains ':'";
        case change_stream_errc::bad_entity_id: return "no entity id can be derived from the keys";
    }
    return "unknown change stream error";
}

bool valid_entity_type(std::string_view t) noexcept {
    return !t.empty() && t.find(':') == std::string_view::npos;
}

bool all_digits(std::string_view s) noexcept {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Sequence numbers are decimal strings up to 40 digits: compare by value without converting.
int compare_sequence(std::string_view a, std::string_view b) noexcept {
    auto strip = [](std::string_view s) {
        const auto p = s.find_first_not_of('0');
        return p == std::string_view::npos ? std::string_view{} : s.substr(p);
    };
    a = strip(a);
    b = strip(b);
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    const int c = a.compare(b);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

std::optional<TimePoint> timestamp_from_number(double v) noexcept {
    if (!std::isfinite(v) || v < 0) return std::nullopt;
    double ms = 0;
    if (v >= 1e14) ms = v / 1000.0;        // microseconds
    else if (v >= 1e11) ms = v;            // milliseconds
    else ms = v * 1000.0;                  // seconds
    if (ms > 9.0e15) return std::nullopt;  // beyond what any clock here represents sensibly
    return from_unix_ms(static_cast<std::int64_t>(std::llround(ms)));
}

template <class Int>
bool read_int(std::string_view s, std::size_t pos, std::size_t len, Int& out) noexcept {
    if (pos + len > s.size()) return false;
    const auto* first = s.data() + pos;
    const auto* last = first + len;
    if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return false;
    return std::from_chars(first, last, out).ec == std::errc{};
}

// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`
std::optional<TimePoint> timestamp_from_iso8601(std::string_view s) noexcept {
    int y = 0;
    unsigned mo = 0, d = 0, h = 0, mi = 0, se = 0;
    if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return std::nullopt;
    if (!read_int(s, 0, 4, y) || !read_int(s, 5, 2, mo) || !read_int(s, 8, 2, d) || !read_int(s, 11, 2, h) ||
        !read_int(s, 14, 2, mi) || !read_int(s, 17, 2, se))
        return std::nullopt;
    std::size_t pos = 19;
    std::int64_t ms = 0;
    if (s[pos] == '.') {
        ++pos;
        const auto start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
        const auto digits = pos - start;
        if (digits == 0 || digits > 9) return std::nullopt;
        for (std::size_t i = 0; i < 3; ++i) ms = ms * 10 + (i < digits ? s[start + i] - '0' : 0);
    }
    if (pos + 1 != s.size() || (s[pos] != 'Z' && s[pos] != 'z')) return std::nullopt;
    if (h > 23 || mi > 59 || se > 60) return std::nullopt;
    using namespace std::chrono;
    const year_month_day ymd{year{y}, month{mo}, day{d}};
    if (!ymd.ok()) return std::nullopt;
    const auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se} + milliseconds{ms};
    return TimePoint{duration_cast<TimePoint::duration>(tp.time_since_epoch())};
}

std::string scalar_text(const nlohmann::json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number() || v.is_boolean()) return v.dump();
    return {};
}

}  // namespace

const std::error_category& change_stream_category() noexcept {
    return detail::error_category_of<change_stream_errc, &describe_change_stream>("wsgate.change_stream");
}

std::string entity_id_of(const nlohmann::json& keys, std::string_view id_attribute) {
    if (!keys.is_object() || keys.empty()) return {};
    if (auto it = keys.find(std::string{id_attribute}); it != keys.end()) return scalar_text(*it);
    if (keys.size() == 1) return scalar_text(keys.begin().value());
    std::string out;
    // nlohmann::json objects iterate in key order, so composite ids are stable.
    for (const auto& [name, value] : keys.items()) {
        auto part = scalar_text(value);
        if (part.empty() && !value.is_string()) return {};
        if (!out.empty()) out += '#';
        out += part;
    }
    return out;
}

std::string entity_type_topic(std::string_view entity_type, std::string_view prefix) {
    std::string t;
    t.reserve(prefix.size() + 1 + entity_type.size());
    t.append(prefix).append(":").append(entity_type);
    return t;
}

std::string entity_topic(std::string_view entity_type, std::string_view entity_id, std::string_view prefix) {
    std::string t = entity_type_topic(entity_type, prefix);
    t.append(":").append(entity_id);
    return t;
}

std::optional<ChangeRecord> parse_change_record(const nlohmann::json& j, std::error_code& ec,
                                                const ChangeRecordFormat& format) noexcept {
    ec.clear();
    auto fail = [&](change_stream_errc e) -> std::optional<ChangeRecord> {
        ec = make_error_code(e);
        return std::nullopt;
    };
    try {
        if (!j.is_object()) return fail(change_stream_errc::not_an_object);
        ChangeRecord r;

        const auto name = j.find("eventName");
        if (name == j.end() || !name->is_string()) return fail(change_stream_errc::bad_event_name);
        const auto type = change_event_type_from_string(name->get_ref<const std::string&>());
        if (!type) return fail(change_stream_errc::bad_event_name);
        r.event_type = *type;

        const auto keys = j.find("keys");
        if (keys == j.end() || !keys->is_object() || keys->empty()) return fail(change_stream_errc::bad_keys);
        r.keys = *keys;

        for (auto [field, target] : {std::pair{"newImage", &r.new_image}, std::pair{"oldImage", &r.old_image}}) {
            const auto it = j.find(field);
            if (it == j.end() || it->is_null()) continue;
            if (!it->is_object()) return fail(change_stream_errc::bad_image);
            *target = *it;
        }
        if (r.event_type != ChangeEventType::remove && r.new_image.is_null())
            return fail(change_stream_errc::missing_image);

        if (const auto seq = j.find("sequenceNumber"); seq != j.end() && !seq->is_null()) {
            if (seq->is_string() && all_digits(seq->get_ref<const std::string&>()))
                r.sequence_number = seq->get<std::string>();
            else if (seq->is_number_unsigned() || (seq->is_number_integer() && seq->get<std::int64_t>() >= 0))
                r.sequence_number = seq->dump();
            else
                return fail(change_stream_errc::bad_sequence_number);
        }

        if (const auto ts = j.find("approximateCreationDateTime"); ts != j.end() && !ts->is_null()) {
            std::optional<TimePoint> t;
            if (ts->is_number()) t = timestamp_from_number(ts->get<double>());
            else if (ts->is_string()) t = timestamp_from_iso8601(ts->get_ref<const std::string&>());
            if (!t) return fail(change_stream_errc::bad_timestamp);
            r.timestamp = *t;
        }

        const auto& attr = format.entity_type_attribute;
        bool found = false;
        for (const auto* holder : {&r.new_image, &r.old_image, &r.keys}) {
            if (!holder->is_object()) continue;
            const auto it = holder->find(attr);
            if (it == holder->end()) continue;
            if (!it->is_string()) return fail(change_stream_errc::bad_entity_type);
            r.entity_type = it->get<std::string>();
            found = true;
            break;
        }
        if (!found) r.entity_type = format.default_entity_type;
        if (!valid_entity_type(r.entity_type)) return fail(change_stream_errc::bad_entity_type);
        return r;
    } catch (...) {
        // Only allocation failure can land here; report it as an unusable record.
        return fail(change_stream_errc::not_an_object);
    }
}

std::optional<ChangeRecord> parse_change_record(std::string_view text, std::error_code& ec,
                                                const ChangeRecordFormat& format) noexcept {
    try {
        const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) {
            ec = make_error_code(change_stream_errc::malformed_json);
            return std::nullopt;
        }
        return parse_change_record(j, ec, format);
    } catch (...) {
        ec = make_error_code(change_stream_errc::malformed_json);
        return std::nullopt;
    }
}

// ---- ChangeStreamProcessor ----------------------------------------------------------------

namespace {

struct Update {
    ChangeRecord record;
    std::string entity_id;
};

}  // namespace

struct ChangeStreamProcessor::Batch {
    TimePoint opened_at{};
    TimePoint closed_at{};
    // Slots keep first-change order; a cancelled update leaves an empty slot.
    std::vector<std::optional<Update>> slots;
    std::unordered_map<std::string, std::size_t> index;  // item key → slot
    std::size_t live = 0;
};

ChangeStreamProcessor::ChangeStreamProcessor(std::shared_ptr<const Clock> clock, Sink sink,
                                             ChangeStreamSettings settings)
    : clock_(std::move(clock)), sink_(std::move(sink)), settings_(std::move(settings)) {
    if (!clock_) throw std::invalid_argument("wsgate::ChangeStreamProcessor: clock is null");
    if (!sink_) throw std::invalid_argument("wsgate::ChangeStreamProcessor: sink is empty");
    if (settings_.max_batch_records == 0)
        throw std::invalid_argument("wsgate::ChangeStreamProcessor: max_batch_records must be at least 1");
    if (settings_.batch_window.count() < 0)
        throw std::invalid_argument("wsgate::ChangeStreamProcessor: batch_window must not be negative");
    if (!settings_.publish_to_type_topic && !settings_.publish_to_entity_topic && !settings_.publish_to_everyone)
        throw std::invalid_argument("wsgate::ChangeStreamProcessor: no audience enabled (type topic, entity topic or everyone)");
    if (!valid_entity_type(settings_.topic_prefix))
        throw std::invalid_argument("wsgate::ChangeStreamProcessor: topic_prefix must be non-empty without ':'");
}

ChangeStreamProcessor::~ChangeStreamProcessor() = default;

namespace {

// Merges `next` into `prev` (same item). Returns false when the pair cancels out.
bool merge(ChangeRecord& prev, ChangeRecord&& next) {
    using T = ChangeEventType;
    const T a = prev.event_type;
    const T b = next.event_type;
    if (a == T::insert && b == T::remove) return false;
    if (a == T::insert && b == T::modify) {
        prev.new_image = std::move(next.new_image);
    } else if (a == T::modify && b == T::modify) {
        prev.new_image = std::move(next.new_image);  // old image stays the pre-batch one
    } else if (a == T::remove && b == T::insert) {
        prev.event_type = T::modify;
        prev.new_image = std::move(next.new_image);
        // prev.old_image is the removed item: the state before the batch.
    } else {
        // MODIFY→REMOVE, and pairs a consistent stream does not produce: the later record wins.
        prev.event_type = b;
        prev.new_image = std::move(next.new_image);
        prev.old_image = std::move(next.old_image);
    }
    prev.keys = std::move(next.keys);
    prev.sequence_number = std::move(next.sequence_number);
    prev.timestamp = next.timestamp;
    return true;
}

}  // namespace

std::error_code ChangeStreamProcessor::push(ChangeRecord record) {
    {
        std::lock_guard lock{mutex_};
        if (!valid_entity_type(record.entity_type)) {
            ++stats_.records_rejected;
            return make_error_code(change_stream_errc::bad_entity_type);
        }
        std::string id = entity_id_of(record.keys, settings_.id_attribute);
        if (id.empty()) {
            ++stats_.records_rejected;
            return make_error_code(change_stream_errc::bad_entity_id);
        }
        ++stats_.records_in;
        try {
            if (!open_) {
                open_ = std::make_unique<Batch>();
                open_->opened_at = clock_->now();
            }
            Batch& b = *open_;
            if (settings_.coalesce) {
                // The key dump is canonical: nlohmann::json objects are ordered by name.
                std::string key = record.entity_type;
                key += '\n';
                key += record.keys.dump();
                if (auto it = b.index.find(key); it != b.index.end()) {
                    auto& slot = b.slots[it->second];
                    if (slot && !slot->record.sequence_number.empty() && !record.sequence_number.empty() &&
                        compare_sequence(record.sequence_number, slot->record.sequence_number) <= 0) {
                        ++stats_.records_stale;
                        return {};
                    }
                    if (slot) {
                        ++stats_.records_coalesced;
                        if (!merge(slot->record, std::move(record))) {
                            ++stats_.records_cancelled;
                            slot.reset();
                            --b.live;
                            b.index.erase(it);
                        }
                        return {};
                    }
                }
                b.index.emplace(std::move(key), b.slots.size());
            }
            b.slots.emplace_back(Update{std::move(record), std::move(id)});
            ++b.live;
            if (b.live >= settings_.max_batch_records) {
                b.closed_at = clock_->now();
                closed_.push_back(std::move(open_));
            }
        } catch (...) {
            // Allocation failure: the record is lost, state stays consistent.
            ++stats_.records_rejected;
            return make_error_code(std::errc::not_enough_memory);
        }
    }
    drain();
    return {};
}

std::size_t ChangeStreamProcessor::poll(TimePoint now) {
    {
        std::lock_guard lock{mutex_};
        if (!open_ || now - open_->opened_at < settings_.batch_window) return 0;
        open_->closed_at = now;
        closed_.push_back(std::move(open_));
    }
    drain();
    return 1;
}

std::size_t ChangeStreamProcessor::poll() { return poll(clock_->now()); }

std::size_t ChangeStreamProcessor::flush() {
    {
        std::lock_guard lock{mutex_};
        if (!open_) return 0;
        open_->closed_at = clock_->now();
        closed_.push_back(std::move(open_));
    }
    drain();
    return 1;
}

std::optional<TimePoint> ChangeStreamProcessor::next_deadline() const {
    std::lock_guard lock{mutex_};
    if (!open_) return std::nullopt;
    return open_->opened_at + settings_.batch_window;
}

std::size_t ChangeStreamProcessor::pending() const {
    std::lock_guard lock{mutex_};
    return open_ ? open_->live : 0;
}

ChangeStreamStats ChangeStreamProcessor::stats() const {
    std::lock_guard lock{mutex_};
    return stats_;
}

std::string ChangeStreamStats::prometheus_text() const {
    std::ostringstream out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP wsgate_change_stream_" << name << ' ' << help << "\n# TYPE wsgate_change_stream_" << name
            << " counter\nwsgate_change_stream_" << name << ' ' << v << '\n';
    };
    counter("records_in_total", "Change records accepted.", records_in);
    counter("records_rejected_total", "Change records refused (no entity type or id).", records_rejected);
    counter("records_coalesced_total", "Change records merged into an earlier update of the same item.",
            records_coalesced);
    counter("records_cancelled_total", "Updates removed because an INSERT was followed by a REMOVE.",
            records_cancelled);
    counter("records_stale_total", "Change records dropped as redelivered or out of order.", records_stale);
    counter("updates_out_total", "Updates emitted in batches.", updates_out);
    counter("batches_total", "Batches emitted.", batches);
    counter("envelopes_total", "Envelopes handed to the sink (one per audience per batch).", envelopes);
    counter("sink_failures_total", "Sink calls that threw.", sink_failures);
    return out.str();
}

std::string ChangeStreamProcessor::prometheus_text() const {
    std::ostringstream out;
    out << stats().prometheus_text()
        << "# HELP wsgate_change_stream_pending_updates Updates in the open batch.\n"
           "# TYPE wsgate_change_stream_pending_updates gauge\nwsgate_change_stream_pending_updates "
        << pending() << '\n';
    return out.str();
}

void ChangeStreamProcessor::drain() {
    {
        std::lock_guard lock{mutex_};
        if (draining_) return;  // the draining thread will deliver what we closed, in order
        draining_ = true;
    }
    for (;;) {
        std::unique_ptr<Batch> batch;
        {
            std::lock_guard lock{mutex_};
            if (closed_.empty()) {
                draining_ = false;
                return;
            }
            batch = std::move(closed_.front());
            closed_.pop_front();
        }

        std::size_t updates = 0;
        std::size_t envelopes = 0;
        std::size_t failures = 0;
        try {
            // Group per audience; std::map keeps the emission order deterministic.
            nlohmann::json all = nlohmann::json::array();
            std::map<std::string, nlohmann::json> by_topic;
            for (auto& slot : batch->slots) {
                if (!slot) continue;
                const ChangeRecord& r = slot->record;
                nlohmann::json u = nlohmann::json::object();
                u["eventType"] = to_string(r.event_type);
                u["timestamp"] = to_unix_ms(r.timestamp);
                if (r.event_type == ChangeEventType::remove)
                    u["data"] = r.old_image.is_null() ? r.keys : r.old_image;
                else
                    u["data"] = r.new_image;
                if (settings_.include_keys) {
                    u["keys"] = r.keys;
                    u["entityType"] = r.entity_type;
                }
                if (settings_.include_old_image && !r.old_image.is_null() && r.event_type != ChangeEventType::remove)
                    u["oldData"] = r.old_image;
                ++updates;
                if (settings_.publish_to_type_topic) {
                    auto& arr = by_topic[entity_type_topic(r.entity_type, settings_.topic_prefix)];
                    if (arr.is_null()) arr = nlohmann::json::array();
                    arr.push_back(u);
                }
                if (settings_.publish_to_entity_topic) {
                    auto& arr = by_topic[entity_topic(r.entity_type, slot->entity_id, settings_.topic_prefix)];
                    if (arr.is_null()) arr = nlohmann::json::array();
                    arr.push_back(u);
                }
                if (settings_.publish_to_everyone) all.push_back(std::move(u));
            }

            auto emit = [&](const std::string* topic, nlohmann::json updates_json) {
                Envelope env{settings_.envelope_type};
                env.timestamp(batch->closed_at);
                if (topic) env.topic(*topic);
                env.field("updates", std::move(updates_json));
                Audience audience = topic ? Audience::topic(*topic) : Audience::everyone();
                if (!settings_.required_permission.empty()) audience.requiring(settings_.required_permission);
                ++envelopes;
                try {
                    sink_(env, audience);
                } catch (...) {
                    ++failures;
                }
            };
            if (settings_.publish_to_everyone && !all.empty()) emit(nullptr, std::move(all));
            for (auto& [topic, arr] : by_topic) emit(&topic, std::move(arr));
        } catch (...) {
            ++failures;  // building the envelopes failed (allocation); the batch is lost
        }

        std::lock_guard lock{mutex_};
        if (updates > 0) ++stats_.batches;
        stats_.updates_out += updates;
        stats_.envelopes += envelopes;
        stats_.sink_failures += failures;
    }
}

}  // namespace wsgate
