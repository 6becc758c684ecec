// DynamoDbConnectionStore: connection records, subscriptions, indexes, scans, expiry, audiences,
// presence and node leases. Streams are in store_streams.cpp.

#include "store_impl.hpp"

#include <wsgate/detail/store_util.hpp>
#include <wsgate/error.hpp>

#include <algorithm>
#include <charconv>
#include <set>
#include <unordered_set>
#include <utility>

namespace wsgate {

using dynamodb_detail::conditional_failed;
using dynamodb_detail::Json;
using dynamodb_detail::N;
using dynamodb_detail::num_attr;
using dynamodb_detail::S;
using dynamodb_detail::str_attr;

namespace {

constexpr std::size_t max_key_value = 1000;

std::vector<std::string> ids_in(const std::vector<Json>& items) {
    std::vector<std::string> out;
    out.reserve(items.size());
    for (const auto& item : items) out.push_back(str_attr(item, "id"));
    return out;
}

Json delete_request(Json key) { return Json{{"DeleteRequest", {{"Key", std::move(key)}}}}; }
Json put_request(Json item) { return Json{{"PutRequest", {{"Item", std::move(item)}}}}; }

// A topic member carries copies of the principal fields presence and filtering look at.
Json member_item(const std::string& topic, const std::string& id, const Json& meta) {
    return Json{{"pk", S(DynamoDbConnectionStore::Impl::key("t#", topic))},
                {"sk", S(DynamoDbConnectionStore::Impl::key("c#", id))},
                {"id", S(id)},
                {"uid", S(str_attr(meta, "uid"))},
                {"dev", S(str_attr(meta, "dev"))},
                {"kind", S(str_attr(meta, "kind"))}};
}

// Scan cursors: the key of the last item of the last partition a page returned.
std::string encode_cursor(const std::string& pk, const std::string& sk) {
    return std::to_string(sk.size()) + ":" + sk + pk;
}

Json decode_cursor(const std::string& cursor) {
    const auto colon = cursor.find(':');
    std::size_t len = 0;
    const auto [p, ec] = std::from_chars(cursor.data(), cursor.data() + (colon == std::string::npos ? 0 : colon), len);
    if (colon == std::string::npos || ec != std::errc{} || p != cursor.data() + colon || len > cursor.size() - colon - 1 ||
        colon + 1 + len == cursor.size())
        throw StoreError(store_errc::invalid_argument, "wsgate dynamodb: not a scan cursor of this store");
    return DynamoDbConnectionStore::Impl::item_key(cursor.substr(colon + 1 + len), cursor.substr(colon + 1, len));
}

}  // namespace

// ---- Impl: keys, time, records ---------------------------------------------------------------

DynamoDbConnectionStore::Impl::Impl(DynamoDbStoreSettings s) : settings(std::move(s)), client(settings) {
    if (!settings.clock) settings.clock = std::make_shared<SystemClock>();
}

std::string DynamoDbConnectionStore::Impl::key(std::string_view prefix, std::string_view value) {
    std::string out(prefix);
    if (!value.empty() && value.size() <= max_key_value && value.front() != '=') {
        out += value;
    } else {
        out += '=';
        out += aws::sha256_hex(value);
    }
    return out;
}

Json DynamoDbConnectionStore::Impl::item_key(const std::string& pk, const std::string& sk) {
    return Json{{"pk", S(pk)}, {"sk", S(sk)}};
}

std::string DynamoDbConnectionStore::Impl::history_sk(std::uint64_t offset) {
    std::string digits = std::to_string(offset);
    return "h#" + std::string(20 - std::min<std::size_t>(20, digits.size()), '0') + digits;
}

std::int64_t DynamoDbConnectionStore::Impl::ttl_for(std::int64_t ms) const {
    const auto secs = ms / 1000 + (ms % 1000 > 0 ? 1 : 0);
    return secs + std::chrono::duration_cast<std::chrono::seconds>(settings.ttl_grace).count();
}

bool DynamoDbConnectionStore::Impl::live(const Json& meta) const {
    return meta.is_object() && meta.contains("exp") && num_attr(meta, "exp") > clock_ms();
}

ConnectionRecord DynamoDbConnectionStore::Impl::record_of(const Json& meta, std::vector<std::string> topics) const {
    ConnectionRecord r;
    r.id = str_attr(meta, "id");
    r.node_id = str_attr(meta, "node");
    r.expires_at = from_unix_ms(num_attr(meta, "exp"));
    r.last_seen = from_unix_ms(num_attr(meta, "seen"));
    const auto rec = Json::parse(str_attr(meta, "rec"), nullptr, false);
    try {
        if (!rec.is_object()) throw std::invalid_argument("not an object");
        r.principal = rec.at("principal").get<Principal>();
        r.connected_at = from_unix_ms(rec.at("connected_at").get<std::int64_t>());
        r.source_ip = rec.value("source_ip", "");
        r.user_agent = rec.value("user_agent", "");
        r.attributes = rec.value("attributes", std::map<std::string, std::string>{});
    } catch (const std::exception&) {
        throw StoreError(store_errc::corrupt, "wsgate dynamodb (table " + settings.table + "): unreadable record " + r.id);
    }
    std::sort(topics.begin(), topics.end());
    r.topics = std::move(topics);
    return r;
}

DynamoDbConnectionStore::Impl::Partition DynamoDbConnectionStore::Impl::read_partition(const ConnectionId& id) {
    Partition out;
    Json q{{"KeyConditionExpression", "#pk = :pk"},
           {"ExpressionAttributeValues", {{":pk", S(key("c#", id))}}},
           {"ConsistentRead", true}};
    client.paginate("Query", std::move(q), [&](const Json& page) {
        for (const auto& item : page.value("Items", Json::array())) {
            if (str_attr(item, "sk") == "meta") out.meta = item;
            else out.topics.push_back(str_attr(item, "topic"));
        }
        return true;
    });
    return out;
}

std::map<std::string, Json> DynamoDbConnectionStore::Impl::metas_of(const std::vector<std::string>& ids) {
    std::vector<Json> keys;
    std::unordered_set<std::string> seen;
    for (const auto& id : ids)
        if (seen.insert(id).second) keys.push_back(meta_key(id));
    std::map<std::string, Json> out;
    if (keys.empty()) return out;
    for (auto& item : client.batch_get(keys, meta_projection)) {
        auto id = str_attr(item, "id");
        out.emplace(std::move(id), std::move(item));
    }
    return out;
}

std::vector<Json> DynamoDbConnectionStore::Impl::members(const std::string& index_pk) {
    std::vector<Json> index;
    Json q{{"KeyConditionExpression", "#pk = :pk"},
           {"ExpressionAttributeValues", {{":pk", S(index_pk)}}},
           {"ProjectionExpression", "#sk, #id"},
           {"ConsistentRead", true}};
    client.paginate("Query", std::move(q), [&](const Json& page) {
        for (const auto& item : page.value("Items", Json::array())) index.push_back(item);
        return true;
    });
    if (index.empty()) return {};
    const auto ids = ids_in(index);
    auto metas = metas_of(ids);
    std::vector<Json> out;
    std::vector<Json> dangling;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto it = metas.find(ids[i]);
        if (it == metas.end()) {
            // The meta item is written before any index item and deleted before them: an index
            // item without one belongs to a connection that is gone.
            dangling.push_back(delete_request(item_key(index_pk, str_attr(index[i], "sk"))));
            continue;
        }
        if (live(it->second)) out.push_back(it->second);
    }
    if (!dangling.empty()) client.batch_write(dangling);
    return out;
}

std::vector<Json> DynamoDbConnectionStore::Impl::claim(const std::vector<std::string>& ids, const std::string& condition,
                                                       const Json& values) {
    std::vector<Json> bodies;
    bodies.reserve(ids.size());
    for (const auto& id : ids) {
        Json b{{"Key", meta_key(id)}, {"ConditionExpression", condition}, {"ReturnValues", "ALL_OLD"}};
        if (!values.is_null() && !values.empty()) b["ExpressionAttributeValues"] = values;
        bodies.push_back(std::move(b));
    }
    std::vector<Json> won;
    if (bodies.empty()) return won;
    for (auto& r : client.call_many("DeleteItem", std::move(bodies), {conditional_failed}))
        if (r.ok() && r.body.contains("Attributes")) won.push_back(std::move(r.body["Attributes"]));
    return won;
}

std::vector<std::vector<std::string>> DynamoDbConnectionStore::Impl::clean_up(const std::vector<Json>& olds) {
    std::vector<std::vector<std::string>> topics(olds.size());
    if (olds.empty()) return topics;
    std::vector<Json> queries;
    for (const auto& old : olds)
        queries.push_back(Json{{"KeyConditionExpression", "#pk = :pk"},
                               {"ExpressionAttributeValues", {{":pk", S(str_attr(old, "pk"))}}},
                               {"ConsistentRead", true}});
    auto pages = client.call_many("Query", queries);
    std::vector<Json> deletes;
    for (std::size_t i = 0; i < olds.size(); ++i) {
        const auto& old = olds[i];
        const auto pk = str_attr(old, "pk");
        const auto id = str_attr(old, "id");
        auto take = [&](const Json& page) {
            for (const auto& item : page.value("Items", Json::array())) {
                const auto sk = str_attr(item, "sk");
                if (sk == "meta") continue;  // put again meanwhile: that record is not ours to clean
                const auto topic = str_attr(item, "topic");
                topics[i].push_back(topic);
                deletes.push_back(delete_request(item_key(pk, sk)));
                deletes.push_back(delete_request(item_key(key("t#", topic), key("c#", id))));
            }
            return true;
        };
        take(pages[i].body);
        if (auto lek = pages[i].body.find("LastEvaluatedKey"); lek != pages[i].body.end() && !lek->empty()) {
            auto q = queries[i];
            q["ExclusiveStartKey"] = *lek;
            client.paginate("Query", std::move(q), take);
        }
        const auto uid = str_attr(old, "uid");
        if (!uid.empty()) deletes.push_back(delete_request(item_key(key("u#", uid), key("c#", id))));
        deletes.push_back(delete_request(item_key(key("n#", str_attr(old, "node")), key("c#", id))));
        std::sort(topics[i].begin(), topics[i].end());
    }
    client.batch_write(deletes);
    return topics;
}

// ---- the store: records ------------------------------------------------------------------------

DynamoDbConnectionStore::DynamoDbConnectionStore(DynamoDbStoreSettings settings)
    : impl_(std::make_unique<Impl>(std::move(settings))) {}
DynamoDbConnectionStore::~DynamoDbConnectionStore() = default;

DynamoDbStats DynamoDbConnectionStore::stats() const noexcept { return impl_->client.stats(); }
const DynamoDbStoreSettings& DynamoDbConnectionStore::settings() const noexcept { return impl_->settings; }

void DynamoDbConnectionStore::put(const ConnectionRecord& r) {
    auto& d = *impl_;
    const auto exp = to_unix_ms(r.expires_at);
    const Json rec{{"principal", r.principal},
                   {"connected_at", to_unix_ms(r.connected_at)},
                   {"source_ip", r.source_ip},
                   {"user_agent", r.user_agent},
                   {"attributes", r.attributes}};
    const std::string kind(to_string(r.principal.kind));
    // The meta item first: index items are only ever hints to it (see Impl::members).
    Json u{{"Key", Impl::meta_key(r.id)},
           {"UpdateExpression",
            "SET #id = :id, #kind = :kind, #uid = :uid, #dev = :dev, #node = :node, #perms = :perms, #rec = :rec, "
            "#exp = :exp, #seen = :seen, #ttl = :ttl, #nsub = if_not_exists(#nsub, :zero)"},
           {"ExpressionAttributeValues",
            {{":id", S(r.id)},
             {":kind", S(kind)},
             {":uid", S(r.principal.user_id)},
             {":dev", S(r.principal.device_id)},
             {":node", S(r.node_id)},
             {":perms", S(detail::join_permissions(r.principal.permissions))},
             {":rec", S(rec.dump(-1, ' ', false, Json::error_handler_t::replace))},
             {":exp", N(exp)},
             {":seen", N(to_unix_ms(r.last_seen))},
             {":ttl", N(d.ttl_for(exp))},
             {":zero", N(std::int64_t{0})}}},
           {"ReturnValues", "ALL_OLD"}};
    auto reply = d.client.call("UpdateItem", std::move(u));
    const Json old = reply.body.value("Attributes", Json::object());

    const auto id_sk = Impl::key("c#", r.id);
    std::vector<Json> writes;
    if (!r.principal.user_id.empty())
        writes.push_back(put_request(Json{{"pk", S(Impl::key("u#", r.principal.user_id))}, {"sk", S(id_sk)}, {"id", S(r.id)}}));
    writes.push_back(put_request(Json{{"pk", S(Impl::key("n#", r.node_id))}, {"sk", S(id_sk)}, {"id", S(r.id)}}));
    if (!old.empty()) {
        const auto old_uid = str_attr(old, "uid");
        if (!old_uid.empty() && old_uid != r.principal.user_id)
            writes.push_back(delete_request(Impl::item_key(Impl::key("u#", old_uid), id_sk)));
        const auto old_node = str_attr(old, "node");
        if (old_node != r.node_id) writes.push_back(delete_request(Impl::item_key(Impl::key("n#", old_node), id_sk)));
    }
    d.client.batch_write(writes);

    // A replaced principal: its topic members' copies follow.
    if (!old.empty() && (str_attr(old, "uid") != r.principal.user_id || str_attr(old, "dev") != r.principal.device_id ||
                         str_attr(old, "kind") != kind)) {
        const Json now_meta{{"uid", S(r.principal.user_id)}, {"dev", S(r.principal.device_id)}, {"kind", S(kind)}};
        std::vector<Json> members;
        for (const auto& topic : d.read_partition(r.id).topics) members.push_back(put_request(member_item(topic, r.id, now_meta)));
        if (!members.empty()) d.client.batch_write(members);
    }
}

std::optional<ConnectionRecord> DynamoDbConnectionStore::get(const ConnectionId& id) {
    auto p = impl_->read_partition(id);
    if (!impl_->live(p.meta)) return std::nullopt;
    return impl_->record_of(p.meta, std::move(p.topics));
}

bool DynamoDbConnectionStore::remove(const ConnectionId& id) {
    auto won = impl_->claim({id}, "attribute_exists(#pk)", nullptr);
    if (won.empty()) return false;
    impl_->clean_up(won);
    return true;
}

bool DynamoDbConnectionStore::touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry) {
    auto& d = *impl_;
    Json values{{":seen", N(to_unix_ms(now))}, {":now", N(d.clock_ms())}};
    std::string update = "SET #seen = :seen";
    if (new_expiry) {
        const auto exp = to_unix_ms(*new_expiry);
        update += ", #exp = :exp, #ttl = :ttl";
        values[":exp"] = N(exp);
        values[":ttl"] = N(d.ttl_for(exp));
    }
    auto r = d.client.call("UpdateItem",
                           Json{{"Key", Impl::meta_key(id)},
                                {"UpdateExpression", update},
                                {"ConditionExpression", "attribute_exists(#pk) AND #exp > :now"},
                                {"ExpressionAttributeValues", std::move(values)}},
                           {conditional_failed});
    return r.ok();
}

// ---- subscriptions -------------------------------------------------------------------------------

bool DynamoDbConnectionStore::subscribe(const ConnectionId& id, const std::string& topic) {
    return subscribe_capped(id, topic, 0) != SubscribeResult::not_found;
}

SubscribeResult DynamoDbConnectionStore::subscribe_capped(const ConnectionId& id, const std::string& topic,
                                                          std::size_t max_topics) {
    auto& d = *impl_;
    const auto pk = Impl::key("c#", id);
    const auto sub_sk = Impl::key("t#", topic);
    // 1. Reserve a slot in the meta item's counter: the conditional update is what keeps racing
    //    callers, in any process, from passing the cap together.
    Json meta;
    for (int tries = 0;; ++tries) {
        Json values{{":one", N(std::int64_t{1})}, {":now", N(d.clock_ms())}};
        std::string condition = "attribute_exists(#pk) AND #exp > :now";
        if (max_topics > 0) {
            condition += " AND #nsub < :cap";
            values[":cap"] = N(static_cast<std::uint64_t>(max_topics));
        }
        auto r = d.client.call("UpdateItem",
                               Json{{"Key", Impl::meta_key(id)},
                                    {"UpdateExpression", "SET #nsub = #nsub + :one"},
                                    {"ConditionExpression", condition},
                                    {"ExpressionAttributeValues", std::move(values)},
                                    {"ReturnValues", "ALL_NEW"}},
                               {conditional_failed});
        if (r.ok()) {
            meta = r.body.value("Attributes", Json::object());
            break;
        }
        // Refused: absent, already held (never refused by the cap), or at the cap.
        auto items = d.client.batch_get({Impl::meta_key(id), Impl::item_key(pk, sub_sk)}, "#sk, #exp, #nsub");
        Json found_meta, found_sub;
        for (auto& item : items) (str_attr(item, "sk") == "meta" ? found_meta : found_sub) = std::move(item);
        if (!d.live(found_meta)) return SubscribeResult::not_found;
        if (!found_sub.is_null()) return SubscribeResult::already_subscribed;
        // A slot came free between the two reads: try again (bounded; a busy connection is at its cap).
        if (max_topics > 0 && num_attr(found_meta, "nsub") < static_cast<std::int64_t>(max_topics) && tries < 8) continue;
        return SubscribeResult::limit_reached;
    }
    // 2. The subscription item, only if it is new; if it was there, give the slot back.
    auto put = d.client.call("PutItem",
                             Json{{"Item", {{"pk", S(pk)}, {"sk", S(sub_sk)}, {"topic", S(topic)}}},
                                  {"ConditionExpression", "attribute_not_exists(#pk)"}},
                             {conditional_failed});
    if (!put.ok()) {
        d.client.call("UpdateItem",
                      Json{{"Key", Impl::meta_key(id)},
                           {"UpdateExpression", "SET #nsub = #nsub - :one"},
                           {"ConditionExpression", "attribute_exists(#pk)"},
                           {"ExpressionAttributeValues", {{":one", N(std::int64_t{1})}}}},
                      {conditional_failed});
        return SubscribeResult::already_subscribed;
    }
    // 3. The topic side, which subscribers() and resolve() read.
    d.client.call("PutItem", Json{{"Item", member_item(topic, id, meta)}});
    return SubscribeResult::subscribed;
}

bool DynamoDbConnectionStore::unsubscribe(const ConnectionId& id, const std::string& topic) {
    auto& d = *impl_;
    auto del = d.client.call("DeleteItem",
                             Json{{"Key", Impl::item_key(Impl::key("c#", id), Impl::key("t#", topic))},
                                  {"ConditionExpression", "attribute_exists(#pk)"}},
                             {conditional_failed});
    if (!del.ok()) return false;
    d.client.call("DeleteItem", Json{{"Key", Impl::item_key(Impl::key("t#", topic), Impl::key("c#", id))}});
    auto dec = d.client.call("UpdateItem",
                             Json{{"Key", Impl::meta_key(id)},
                                  {"UpdateExpression", "SET #nsub = #nsub - :one"},
                                  {"ConditionExpression", "attribute_exists(#pk)"},
                                  {"ExpressionAttributeValues", {{":one", N(std::int64_t{1})}}}},
                             {conditional_failed});
    return dec.ok();  // a subscription left behind by a removed connection is cleaned, not reported
}

std::vector<std::string> DynamoDbConnectionStore::topics_of(const ConnectionId& id) {
    auto p = impl_->read_partition(id);
    if (!impl_->live(p.meta)) return {};
    std::sort(p.topics.begin(), p.topics.end());
    return std::move(p.topics);
}

std::vector<ConnectionId> DynamoDbConnectionStore::subscribers(const std::string& topic) {
    return ids_in(impl_->members(Impl::key("t#", topic)));
}

std::vector<ConnectionId> DynamoDbConnectionStore::connections_of_user(const std::string& user_id) {
    if (user_id.empty()) return {};
    std::vector<ConnectionId> out;
    // A record whose user changed is skipped, not cleaned: put() moves its index item itself.
    for (const auto& meta : impl_->members(Impl::key("u#", user_id)))
        if (str_attr(meta, "uid") == user_id) out.push_back(str_attr(meta, "id"));
    return out;
}

std::vector<PresenceMember> DynamoDbConnectionStore::presence(const std::string& topic) {
    std::vector<PresenceMember> out;
    for (const auto& meta : impl_->members(Impl::key("t#", topic)))
        out.push_back({str_attr(meta, "id"), principal_kind_from_string(str_attr(meta, "kind")), str_attr(meta, "uid"),
                       str_attr(meta, "dev"), str_attr(meta, "node")});
    std::sort(out.begin(), out.end(), [](const PresenceMember& a, const PresenceMember& b) { return a.id < b.id; });
    return out;
}

// ---- whole-table reads -----------------------------------------------------------------------

ScanPage DynamoDbConnectionStore::scan(const std::string& cursor, std::size_t limit) {
    auto& d = *impl_;
    if (limit == 0) limit = 1;
    ScanPage out;
    // A connection's items share a partition and a Scan returns a partition's items together
    // (meta before its `t#` subscriptions): one pass gives each record with its topics.
    struct Current {
        std::string pk, last_sk;
        Json meta;
        std::vector<std::string> topics;
    };
    std::optional<Current> cur;
    std::string last_pk, last_sk;  // the end of the last partition finished
    bool full = false;
    auto finish = [&] {
        if (!cur) return;
        if (d.live(cur->meta)) out.records.push_back(d.record_of(cur->meta, std::move(cur->topics)));
        last_pk = cur->pk;
        last_sk = cur->last_sk;
        cur.reset();
    };
    Json body{{"FilterExpression", "begins_with(#pk, :c)"},
              {"ExpressionAttributeValues", {{":c", S("c")}}},
              {"ConsistentRead", true},
              {"Limit", static_cast<std::uint64_t>(std::min<std::size_t>(1000, limit * 2 + 16))}};
    if (!cursor.empty()) body["ExclusiveStartKey"] = decode_cursor(cursor);
    d.client.paginate("Scan", std::move(body), [&](const Json& page) {
        for (const auto& item : page.value("Items", Json::array())) {
            const auto pk = str_attr(item, "pk");
            if (cur && cur->pk != pk) {
                finish();
                if (out.records.size() >= limit) {
                    full = true;
                    return false;
                }
            }
            if (!cur) cur = Current{pk, {}, nullptr, {}};
            cur->last_sk = str_attr(item, "sk");
            if (cur->last_sk == "meta") cur->meta = item;
            else cur->topics.push_back(str_attr(item, "topic"));
        }
        return true;
    });
    // Stopped on the first item past the page, so there is more; else the last partition is whole.
    if (full) out.next_cursor = encode_cursor(last_pk, last_sk);
    else finish();
    return out;
}

std::vector<ConnectionRecord> DynamoDbConnectionStore::expire(TimePoint now) {
    auto& d = *impl_;
    std::vector<ConnectionRecord> out;
    const Json values{{":meta", S("meta")}, {":now", N(to_unix_ms(now))}};
    d.client.paginate("Scan",
                      Json{{"FilterExpression", "#sk = :meta AND #exp <= :now"},
                           {"ProjectionExpression", "#pk, #id"},
                           {"ExpressionAttributeValues", values},
                           {"ConsistentRead", true}},
                      [&](const Json& page) {
                          std::vector<std::string> ids = ids_in(page.value("Items", Json::array()));
                          // Each expired record goes to the one caller whose conditional delete wins.
                          auto won = d.claim(ids, "#exp <= :now", Json{{":now", values[":now"]}});
                          auto topics = d.clean_up(won);
                          for (std::size_t i = 0; i < won.size(); ++i)
                              out.push_back(d.record_of(won[i], std::move(topics[i])));
                          return true;
                      });
    return out;
}

std::size_t DynamoDbConnectionStore::count() {
    auto& d = *impl_;
    std::size_t n = 0;
    d.client.paginate("Scan",
                      Json{{"FilterExpression", "#sk = :meta AND #exp > :now"},
                           {"Select", "COUNT"},
                           {"ExpressionAttributeValues", {{":meta", S("meta")}, {":now", N(d.clock_ms())}}},
                           {"ConsistentRead", true}},
                      [&](const Json& page) {
                          n += static_cast<std::size_t>(page.value("Count", 0));
                          return true;
                      });
    return n;
}

ResolvedAudience DynamoDbConnectionStore::resolve(const Audience& a) {
    auto& d = *impl_;
    ResolvedAudience out;
    auto judge = [&](const Json& meta) {
        const auto id = str_attr(meta, "id");
        if (detail::admits(a, id, str_attr(meta, "uid"), str_attr(meta, "dev"), str_attr(meta, "perms")))
            out.ids.push_back(id);
        else
            ++out.filtered;
    };
    switch (a.kind) {
        case Audience::Kind::topic:
            for (const auto& meta : d.members(Impl::key("t#", a.topic_name))) judge(meta);
            break;
        case Audience::Kind::user:
        case Audience::Kind::users: {
            std::unordered_set<std::string> seen;
            for (const auto& user : detail::unique_users(a)) {
                if (user.empty()) continue;
                for (const auto& meta : d.members(Impl::key("u#", user)))
                    if (str_attr(meta, "uid") == user && seen.insert(str_attr(meta, "id")).second) judge(meta);
            }
            break;
        }
        case Audience::Kind::connections: {
            auto metas = d.metas_of(a.connection_ids);
            std::unordered_set<std::string> seen;
            for (const auto& id : a.connection_ids) {
                auto it = metas.find(id);
                if (it == metas.end() || !d.live(it->second) || !seen.insert(id).second) continue;
                judge(it->second);
            }
            break;
        }
        case Audience::Kind::everyone:
            d.client.paginate("Scan",
                              Json{{"FilterExpression", "#sk = :meta AND #exp > :now"},
                                   {"ProjectionExpression", Impl::meta_projection},
                                   {"ExpressionAttributeValues", {{":meta", S("meta")}, {":now", N(d.clock_ms())}}},
                                   {"ConsistentRead", true}},
                              [&](const Json& page) {
                                  for (const auto& meta : page.value("Items", Json::array())) judge(meta);
                                  return true;
                              });
            break;
    }
    return out;
}

// ---- node lifetime ---------------------------------------------------------------------------

std::size_t DynamoDbConnectionStore::remove_node(const std::string& node_id) {
    auto& d = *impl_;
    const auto index_pk = Impl::key("n#", node_id);
    std::vector<Json> index;
    d.client.paginate("Query",
                      Json{{"KeyConditionExpression", "#pk = :pk"},
                           {"ExpressionAttributeValues", {{":pk", S(index_pk)}}},
                           {"ConsistentRead", true}},
                      [&](const Json& page) {
                          for (const auto& item : page.value("Items", Json::array())) index.push_back(item);
                          return true;
                      });
    if (index.empty()) return 0;
    auto won = d.claim(ids_in(index), "#node = :node", Json{{":node", S(node_id)}});
    d.clean_up(won);
    std::vector<Json> stale;  // index items of records that moved to another node or are gone
    for (const auto& item : index) stale.push_back(delete_request(Impl::item_key(index_pk, str_attr(item, "sk"))));
    d.client.batch_write(stale);
    return won.size();
}

void DynamoDbConnectionStore::renew_lease(const std::string& node_id, TimePoint now, Duration lease) {
    impl_->client.call("PutItem", Json{{"Item",
                                        {{"pk", S("leases")},
                                         {"sk", S(Impl::key("", node_id))},
                                         {"node", S(node_id)},
                                         {"until", N(to_unix_ms(now + lease))}}}});
}

bool DynamoDbConnectionStore::holds_lease(const std::string& node_id, TimePoint now) {
    auto r = impl_->client.call("GetItem", Json{{"Key", Impl::item_key("leases", Impl::key("", node_id))},
                                                {"ConsistentRead", true}});
    auto it = r.body.find("Item");
    return it != r.body.end() && num_attr(*it, "until") > to_unix_ms(now);
}

std::size_t DynamoDbConnectionStore::reap_expired_nodes(TimePoint now, std::size_t limit) {
    auto& d = *impl_;
    if (limit == 0) return 0;
    const auto now_ms = N(to_unix_ms(now));
    std::vector<std::string> dead;
    d.client.paginate("Query",
                      Json{{"KeyConditionExpression", "#pk = :pk"},
                           {"FilterExpression", "#until <= :now"},
                           {"ExpressionAttributeValues", {{":pk", S("leases")}, {":now", now_ms}}},
                           {"ConsistentRead", true}},
                      [&](const Json& page) {
                          for (const auto& item : page.value("Items", Json::array())) dead.push_back(str_attr(item, "node"));
                          return true;
                      });
    std::size_t budget = limit;
    std::size_t removed = 0;
    for (const auto& node : dead) {
        if (budget == 0) break;
        const auto index_pk = Impl::key("n#", node);
        auto page = d.client.call("Query", Json{{"KeyConditionExpression", "#pk = :pk"},
                                                {"ExpressionAttributeValues", {{":pk", S(index_pk)}}},
                                                {"Limit", static_cast<std::uint64_t>(budget)},
                                                {"ConsistentRead", true}});
        const auto index = page.body.value("Items", Json::array());
        const bool more = page.body.contains("LastEvaluatedKey") && !page.body["LastEvaluatedKey"].empty();
        std::vector<Json> items(index.begin(), index.end());
        if (!items.empty()) {
            // Each record goes to the one reaper whose conditional delete wins.
            auto won = d.claim(ids_in(items), "#node = :node", Json{{":node", S(node)}});
            d.clean_up(won);
            std::vector<Json> stale;
            for (const auto& item : items) stale.push_back(delete_request(Impl::item_key(index_pk, str_attr(item, "sk"))));
            d.client.batch_write(stale);
            removed += won.size();
            budget -= std::min(budget, items.size());
        }
        // None of its records left: forget the lease, unless the node renewed it meanwhile.
        if (!more)
            d.client.call("DeleteItem",
                          Json{{"Key", Impl::item_key("leases", Impl::key("", node))},
                               {"ConditionExpression", "#until <= :now"},
                               {"ExpressionAttributeValues", {{":now", now_ms}}}},
                          {conditional_failed});
    }
    return removed;
}

}  // namespace wsgate
