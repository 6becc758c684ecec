// DynamoDbConnectionStore: topic streams (positions, history) and device cursors.
//
// A stream is the item `s#<topic>`/`top` {off, epoch, lb, lat, keep}, holding the newest
// publication's body (`lb`, appended at `lat`), and history items `s#<topic>`/`h#<offset>`
// {body, at}. An append first writes the current top's publication to the history (idempotent:
// racing appenders write the same item), then moves the top with a conditional update; so the
// top at k+1 implies h#k exists, and a reader never sees offset N+1 kept without N. The kept
// window is the last `keep` offsets of the top (the count bound of the last append); items older
// than the window are deleted one per append and ignored by readers.

#include "store_impl.hpp"

#include <wsgate/error.hpp>
#include <wsgate/random.hpp>

#include <algorithm>
#include <charconv>
#include <limits>

namespace wsgate {

using dynamodb_detail::conditional_failed;
using dynamodb_detail::Json;
using dynamodb_detail::N;
using dynamodb_detail::num_attr;
using dynamodb_detail::S;
using dynamodb_detail::str_attr;

namespace {

struct Top {
    bool exists = false;
    std::uint64_t off = 0;
    std::string epoch;
    std::string last_body;
    std::int64_t last_at = 0;
    std::uint64_t keep = 0;
};

std::uint64_t u64(std::int64_t v) { return v < 0 ? 0 : static_cast<std::uint64_t>(v); }

Top read_top(DynamoDbConnectionStore::Impl& d, const std::string& pk) {
    auto r = d.client.call("GetItem", Json{{"Key", DynamoDbConnectionStore::Impl::item_key(pk, "top")}, {"ConsistentRead", true}});
    Top t;
    auto it = r.body.find("Item");
    if (it == r.body.end()) return t;
    t.exists = true;
    t.off = u64(num_attr(*it, "off"));
    t.epoch = str_attr(*it, "epoch");
    t.last_body = str_attr(*it, "lb");
    t.last_at = num_attr(*it, "lat");
    t.keep = u64(num_attr(*it, "keep"));
    return t;
}

std::uint64_t offset_of(const Json& item) {
    const auto sk = str_attr(item, "sk");
    std::uint64_t v = 0;
    if (sk.size() < 3 || !sk.starts_with("h#") ||
        std::from_chars(sk.data() + 2, sk.data() + sk.size(), v).ec != std::errc{})
        throw StoreError(store_errc::corrupt, "wsgate dynamodb: unreadable history item " + sk);
    return v;
}

StoredPublication publication_of(const Json& item) {
    return {offset_of(item), from_unix_ms(num_attr(item, "at")), str_attr(item, "body")};
}

std::int64_t ms_or_min(TimePoint t) {
    return t == TimePoint::min() ? std::numeric_limits<std::int64_t>::min() / 2 : to_unix_ms(t);
}

/// The top, and the oldest offset kept at `not_before`: the first history item of the window
/// with `at` >= not_before (judged from the front, as the Redis store does), else the top's own
/// publication if young enough, else top + 1.
struct Window {
    Top top;
    std::string pk;
    std::uint64_t first = 1;
};

Window window_of(DynamoDbConnectionStore::Impl& d, const std::string& topic, TimePoint not_before) {
    Window w;
    w.pk = DynamoDbConnectionStore::Impl::key("s#", topic);
    w.top = read_top(d, w.pk);
    if (!w.top.exists) return w;
    const auto off = w.top.off;
    w.first = off + 1;
    if (w.top.keep == 0 || off == 0) return w;
    const auto nb = ms_or_min(not_before);
    const std::uint64_t lo = off >= w.top.keep ? off - w.top.keep + 1 : 1;
    if (lo < off) {
        bool found = false;
        d.client.paginate("Query",
                          Json{{"KeyConditionExpression", "#pk = :pk AND #sk BETWEEN :lo AND :hi"},
                               {"FilterExpression", "#at >= :nb"},
                               {"ProjectionExpression", "#sk, #at"},
                               {"ExpressionAttributeValues",
                                {{":pk", S(w.pk)},
                                 {":lo", S(DynamoDbConnectionStore::Impl::history_sk(lo))},
                                 {":hi", S(DynamoDbConnectionStore::Impl::history_sk(off - 1))},
                                 {":nb", N(nb)}}},
                               {"Limit", 100},
                               {"ConsistentRead", true}},
                          [&](const Json& page) {
                              const auto items = page.value("Items", Json::array());
                              if (items.empty()) return true;
                              w.first = offset_of(items.front());
                              found = true;
                              return false;
                          });
        if (found) return w;
    }
    if (w.top.last_at >= nb) w.first = off;
    return w;
}

/// History items [from, to] in `forward` order, at most `limit`.
std::vector<StoredPublication> history(DynamoDbConnectionStore::Impl& d, const std::string& pk, std::uint64_t from,
                                       std::uint64_t to, std::size_t limit, bool forward) {
    std::vector<StoredPublication> out;
    if (from > to || limit == 0) return out;
    d.client.paginate("Query",
                      Json{{"KeyConditionExpression", "#pk = :pk AND #sk BETWEEN :lo AND :hi"},
                           {"ExpressionAttributeValues",
                            {{":pk", S(pk)},
                             {":lo", S(DynamoDbConnectionStore::Impl::history_sk(from))},
                             {":hi", S(DynamoDbConnectionStore::Impl::history_sk(to))}}},
                           {"ScanIndexForward", forward},
                           {"Limit", static_cast<std::uint64_t>(std::min<std::size_t>(limit, 1000))},
                           {"ConsistentRead", true}},
                      [&](const Json& page) {
                          for (const auto& item : page.value("Items", Json::array())) {
                              out.push_back(publication_of(item));
                              if (out.size() >= limit) return false;
                          }
                          return true;
                      });
    return out;
}

StoredPublication own_publication(const Top& t) { return {t.off, from_unix_ms(t.last_at), t.last_body}; }

}  // namespace

StreamPosition DynamoDbConnectionStore::append(const std::string& topic, std::string_view body, TimePoint now,
                                               const HistoryRetention& keep) {
    auto& d = *impl_;
    const auto pk = Impl::key("s#", topic);
    const auto at = to_unix_ms(now);
    const auto max_age = std::max<std::int64_t>(0, keep.max_age.count());
    const auto keep_n = static_cast<std::uint64_t>(keep.max_count);
    Json values{{":body", S(body)}, {":at", N(at)}, {":keep", N(keep_n)}};
    constexpr int max_tries = 10'000;  // every failed try is another appender's success
    for (int tries = 0; tries < max_tries; ++tries) {
        const auto top = read_top(d, pk);
        if (!top.exists) {
            const auto epoch = random_token();
            Json v = values;
            v[":one"] = N(std::uint64_t{1});
            v[":epoch"] = S(epoch);
            auto r = d.client.call("UpdateItem",
                                   Json{{"Key", Impl::item_key(pk, "top")},
                                        {"UpdateExpression",
                                         "SET #off = :one, #epoch = :epoch, #lb = :body, #lat = :at, #keep = :keep"},
                                        {"ConditionExpression", "attribute_not_exists(#pk)"},
                                        {"ExpressionAttributeValues", std::move(v)}},
                                   {conditional_failed});
            if (r.ok()) return {1, epoch};
            continue;
        }
        const auto k = top.off;
        if (keep_n > 0 && k > 0) {
            // Help first: the publication at the top goes to the history before the top moves on.
            Json item{{"pk", S(pk)}, {"sk", S(Impl::history_sk(k))}, {"body", S(top.last_body)}, {"at", N(top.last_at)}};
            if (max_age > 0) item["ttl"] = N(d.ttl_for(top.last_at + max_age));
            std::vector<Json> writes{Json{{"PutRequest", {{"Item", std::move(item)}}}}};
            if (k > keep_n)
                writes.push_back(Json{{"DeleteRequest", {{"Key", Impl::item_key(pk, Impl::history_sk(k - keep_n))}}}});
            d.client.batch_write(writes);
        }
        Json v = values;
        v[":k"] = N(k);
        v[":next"] = N(k + 1);
        v[":epoch"] = S(top.epoch);
        auto r = d.client.call("UpdateItem",
                               Json{{"Key", Impl::item_key(pk, "top")},
                                    {"UpdateExpression", "SET #off = :next, #lb = :body, #lat = :at, #keep = :keep"},
                                    {"ConditionExpression", "#off = :k AND #epoch = :epoch"},
                                    {"ExpressionAttributeValues", std::move(v)}},
                               {conditional_failed});
        if (r.ok()) return {k + 1, top.epoch};
    }
    throw StoreError(store_errc::busy, "wsgate dynamodb (table " + d.settings.table + "): append to '" + topic +
                                           "' lost " + std::to_string(max_tries) + " races in a row");
}

StreamRead DynamoDbConnectionStore::read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                                TimePoint not_before) {
    auto& d = *impl_;
    const auto w = window_of(d, topic, not_before);
    StreamRead out;
    out.top = {w.top.off, w.top.epoch};
    out.first_retained = w.first;
    if (limit == 0 || !w.top.exists || w.first > w.top.off || after >= w.top.off) return out;
    const auto from = std::max(after + 1, w.first);
    out.publications = history(d, w.pk, from, w.top.off - 1, limit, true);
    if (out.publications.size() < limit) out.publications.push_back(own_publication(w.top));
    return out;
}

StreamRead DynamoDbConnectionStore::latest(const std::string& topic, std::size_t limit, TimePoint not_before) {
    auto& d = *impl_;
    const auto w = window_of(d, topic, not_before);
    StreamRead out;
    out.top = {w.top.off, w.top.epoch};
    out.first_retained = w.first;
    if (limit == 0 || !w.top.exists || w.first > w.top.off) return out;
    out.publications = history(d, w.pk, w.first, w.top.off - 1, limit - 1, false);
    std::reverse(out.publications.begin(), out.publications.end());
    out.publications.push_back(own_publication(w.top));
    return out;
}

void DynamoDbConnectionStore::save_cursor(const std::string& device_key, const std::string& topic,
                                          const StreamPosition& p, TimePoint now, Duration keep_for) {
    auto& d = *impl_;
    const auto key = Impl::item_key(Impl::key("d#", device_key), Impl::key("", topic));
    if (keep_for.count() <= 0) {
        d.client.call("DeleteItem", Json{{"Key", key}});
        return;
    }
    const auto until = to_unix_ms(now + keep_for);
    // Forward only within an epoch; another epoch, or a forgotten cursor, is replaced.
    auto r = d.client.call(
        "UpdateItem",
        Json{{"Key", key},
             {"UpdateExpression", "SET #off = :off, #epoch = :epoch, #until = :until, #ttl = :ttl"},
             {"ConditionExpression", "attribute_not_exists(#pk) OR #epoch <> :epoch OR #off < :off OR #until <= :now"},
             {"ExpressionAttributeValues",
              {{":off", N(p.offset)}, {":epoch", S(p.epoch)}, {":until", N(until)}, {":ttl", N(d.ttl_for(until))},
               {":now", N(to_unix_ms(now))}}}},
        {conditional_failed});
    if (r.ok()) return;
    // An older position: ignored, but the save still restarts the countdown.
    d.client.call("UpdateItem",
                  Json{{"Key", key},
                       {"UpdateExpression", "SET #until = :until, #ttl = :ttl"},
                       {"ConditionExpression", "attribute_exists(#pk)"},
                       {"ExpressionAttributeValues", {{":until", N(until)}, {":ttl", N(d.ttl_for(until))}}}},
                  {conditional_failed});
}

std::optional<StreamPosition> DynamoDbConnectionStore::load_cursor(const std::string& device_key,
                                                                   const std::string& topic, TimePoint now) {
    auto r = impl_->client.call(
        "GetItem",
        Json{{"Key", Impl::item_key(Impl::key("d#", device_key), Impl::key("", topic))}, {"ConsistentRead", true}});
    auto it = r.body.find("Item");
    if (it == r.body.end() || num_attr(*it, "until") <= to_unix_ms(now)) return std::nullopt;
    return StreamPosition{u64(num_attr(*it, "off")), str_attr(*it, "epoch")};
}

}  // namespace wsgate
