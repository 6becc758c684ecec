// Change-stream processor: parsing the plain-JSON record, batching, coalescing, per-entity topics.
#include "catch.hpp"

#include <wsgate/stream/change_stream.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>

using nlohmann::json;
using wsgate::ChangeEventType;
using wsgate::ChangeRecord;
using wsgate::change_stream_errc;

namespace {

std::optional<ChangeRecord> parse(const json& j, std::error_code& ec, wsgate::ChangeRecordFormat f = {}) {
    return wsgate::parse_change_record(j, ec, f);
}

json insert_json(const std::string& id, int value) {
    return {{"eventName", "INSERT"},
            {"keys", {{"entity_id", id}}},
            {"newImage", {{"entity_id", id}, {"entity_type", "stream"}, {"metric_value", value}}},
            {"sequenceNumber", "111"},
            {"approximateCreationDateTime", 1699123456}};
}

json patched(const json& patch) {
    auto j = insert_json("a", 1);
    j.update(patch);
    return j;
}

ChangeRecord rec(ChangeEventType t, std::string type, std::string id, int value, std::string seq = {}) {
    ChangeRecord r;
    r.event_type = t;
    r.entity_type = std::move(type);
    r.keys = {{"entity_id", id}};
    if (t != ChangeEventType::remove) r.new_image = {{"entity_id", id}, {"v", value}};
    if (t != ChangeEventType::insert) r.old_image = {{"entity_id", id}, {"v", value - 1}};
    r.sequence_number = std::move(seq);
    r.timestamp = wsgate::from_unix_ms(1'700'000'000'000 + value);
    return r;
}

struct Sent {
    json envelope;
    wsgate::Audience audience;
};

struct Fixture {
    std::shared_ptr<wsgate::ManualClock> clock = std::make_shared<wsgate::ManualClock>();
    std::vector<Sent> sent;
    wsgate::ChangeStreamProcessor::Sink sink() {
        return [this](const wsgate::Envelope& e, const wsgate::Audience& a) {
            sent.push_back({e.to_json(clock->now()), a});
        };
    }
    const Sent* to_topic(const std::string& topic) const {
        for (const auto& s : sent)
            if (s.audience.kind == wsgate::Audience::Kind::topic && s.audience.topic_name == topic) return &s;
        return nullptr;
    }
};

}  // namespace

// ---- parsing ------------------------------------------------------------------------------

TEST_CASE("parse_change_record reads the plain JSON form", "[stream]") {
    std::error_code ec;
    auto r = parse(insert_json("stream-001", 1234), ec);
    REQUIRE(r);
    CHECK_FALSE(ec);
    CHECK(r->event_type == ChangeEventType::insert);
    CHECK(r->entity_type == "stream");
    CHECK(r->keys == json{{"entity_id", "stream-001"}});
    CHECK(r->new_image["metric_value"] == 1234);
    CHECK(r->old_image.is_null());
    CHECK(r->sequence_number == "111");
    CHECK(wsgate::to_unix_ms(r->timestamp) == 1'699'123'456'000);
}

TEST_CASE("approximateCreationDateTime accepts seconds, ms, µs and ISO-8601", "[stream]") {
    std::error_code ec;
    auto with_ts = [&](json ts) {
        auto j = insert_json("a", 1);
        j["approximateCreationDateTime"] = std::move(ts);
        return parse(j, ec);
    };
    auto ms_of = [](const std::optional<ChangeRecord>& r) { return wsgate::to_unix_ms(r->timestamp); };
    REQUIRE(with_ts(1699123456.789));
    CHECK(ms_of(with_ts(1699123456.789)) == 1'699'123'456'789);
    CHECK(ms_of(with_ts(1'699'123'456'789)) == 1'699'123'456'789);
    CHECK(ms_of(with_ts(1'699'123'456'789'123)) == 1'699'123'456'789);
    CHECK(ms_of(with_ts("2023-11-04T18:44:16.789Z")) == 1'699'123'456'789);
    CHECK(ms_of(with_ts("2023-11-04T18:44:16Z")) == 1'699'123'456'000);
    CHECK(ms_of(with_ts("2023-11-04T18:44:16.7891234Z")) == 1'699'123'456'789);
    CHECK(ms_of(with_ts(nullptr)) == 0);

    for (json bad : {json(-1), json(true), json("yesterday"), json("2023-13-04T18:44:16Z"),
                     json("2023-02-30T00:00:00Z"), json("2023-11-04T25:00:00Z"), json("2023-11-04T18:44:16"),
                     json("2023-11-04T18:44:16.Z"), json("2023-11-04T18:44:16+01:00"), json("+023-11-04T18:44:16Z"),
                     json::array(), json::object()}) {
        INFO(bad.dump());
        CHECK_FALSE(with_ts(bad));
        CHECK(ec == change_stream_errc::bad_timestamp);
    }
}

TEST_CASE("parse_change_record refuses malformed records with a precise error", "[stream]") {
    std::error_code ec;
    auto expect = [&](json j, change_stream_errc e) {
        INFO(j.dump());
        CHECK_FALSE(parse(j, ec));
        CHECK(ec == e);
        CHECK_FALSE(ec.message().empty());
    };
    expect(json::array(), change_stream_errc::not_an_object);
    expect("INSERT", change_stream_errc::not_an_object);
    auto j = insert_json("a", 1);
    j.erase("eventName");
    expect(j, change_stream_errc::bad_event_name);
    expect(patched({{"eventName", "insert"}}), change_stream_errc::bad_event_name);
    expect(patched({{"eventName", 3}}), change_stream_errc::bad_event_name);
    expect(patched({{"keys", json::object()}}), change_stream_errc::bad_keys);
    expect(patched({{"keys", json::array({1})}}), change_stream_errc::bad_keys);
    j = insert_json("a", 1);
    j.erase("keys");
    expect(j, change_stream_errc::bad_keys);
    expect(patched({{"newImage", json::array()}}), change_stream_errc::bad_image);
    expect(patched({{"oldImage", "x"}}), change_stream_errc::bad_image);
    expect(patched({{"eventName", "MODIFY"}, {"newImage", nullptr}}),
           change_stream_errc::missing_image);
    expect(patched({{"sequenceNumber", "12a"}}), change_stream_errc::bad_sequence_number);
    expect(patched({{"sequenceNumber", ""}}), change_stream_errc::bad_sequence_number);
    expect(patched({{"sequenceNumber", -1}}), change_stream_errc::bad_sequence_number);
    expect(patched({{"sequenceNumber", 1.5}}), change_stream_errc::bad_sequence_number);

    CHECK(std::string{wsgate::change_stream_category().name()} == "wsgate.change_stream");
}

TEST_CASE("parse_change_record finds the entity type in images, keys or the default", "[stream]") {
    std::error_code ec;
    // REMOVE without images: the type comes from the keys or the default.
    json remove = {{"eventName", "REMOVE"}, {"keys", {{"entity_id", "x"}}}};
    CHECK_FALSE(parse(remove, ec));
    CHECK(ec == change_stream_errc::bad_entity_type);
    auto r = parse(remove, ec, {"entity_type", "metrics"});
    REQUIRE(r);
    CHECK(r->entity_type == "metrics");
    CHECK(r->new_image.is_null());

    remove["keys"]["entity_type"] = "orders";
    r = parse(remove, ec, {"entity_type", "metrics"});
    REQUIRE(r);
    CHECK(r->entity_type == "orders");

    remove["oldImage"] = {{"entity_type", "users"}};
    r = parse(remove, ec);
    REQUIRE(r);
    CHECK(r->entity_type == "users");

    // A custom attribute name; a numeric sequence number becomes its decimal text.
    json j = {{"eventName", "MODIFY"}, {"keys", {{"pk", 7}}}, {"newImage", {{"kind", "game"}}},
              {"sequenceNumber", 42}};
    r = parse(j, ec, {"kind", ""});
    REQUIRE(r);
    CHECK(r->entity_type == "game");
    CHECK(r->sequence_number == "42");

    for (json bad_type : {json("a:b"), json(""), json(5), json(nullptr)}) {
        INFO(bad_type.dump());
        auto k = insert_json("a", 1);
        k["newImage"]["entity_type"] = bad_type;
        CHECK_FALSE(parse(k, ec));
        CHECK(ec == change_stream_errc::bad_entity_type);
    }
}

TEST_CASE("parse_change_record from text never throws on hostile input", "[stream]") {
    std::error_code ec;
    for (std::string_view text : {"", "{", "nul", "{\"eventName\":\"INSERT\"", "\xff\xfe", "[1,2,3]", "42"}) {
        INFO(text);
        CHECK_FALSE(wsgate::parse_change_record(text, ec));
        CHECK(ec);
    }
    CHECK_FALSE(wsgate::parse_change_record(std::string_view{"{"}, ec));
    CHECK(ec == change_stream_errc::malformed_json);
    const auto good = insert_json("a", 1).dump();
    CHECK(wsgate::parse_change_record(std::string_view{good}, ec));
    CHECK_FALSE(ec);
}

TEST_CASE("entity_id_of derives ids from single, named and composite keys", "[stream]") {
    CHECK(wsgate::entity_id_of(json{{"entity_id", "s-1"}, {"ts", 5}}) == "s-1");
    CHECK(wsgate::entity_id_of(json{{"pk", 42}}) == "42");
    CHECK(wsgate::entity_id_of(json{{"pk", true}}) == "true");
    CHECK(wsgate::entity_id_of(json{{"sk", "b"}, {"pk", "a"}}) == "a#b");  // attribute-name order
    CHECK(wsgate::entity_id_of(json{{"id", 1}}, "id") == "1");
    CHECK(wsgate::entity_id_of(json::object()).empty());
    CHECK(wsgate::entity_id_of(json{{"pk", nullptr}}).empty());
    CHECK(wsgate::entity_id_of(json{{"pk", json::object()}}).empty());
    CHECK(wsgate::entity_id_of(json{{"a", 1}, {"b", json::array()}}).empty());
    CHECK(wsgate::entity_id_of(json::array({1})).empty());
    CHECK(wsgate::entity_topic("orders", "42") == "entity:orders:42");
    CHECK(wsgate::entity_type_topic("orders", "db") == "db:orders");
}

// ---- batching -----------------------------------------------------------------------------

TEST_CASE("a batch closes when it reaches max_batch_records", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamSettings s;
    s.max_batch_records = 3;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink(), s};
    REQUIRE_FALSE(p.push(rec(ChangeEventType::insert, "orders", "1", 10)));
    REQUIRE_FALSE(p.push(rec(ChangeEventType::insert, "orders", "2", 20)));
    CHECK(f.sent.empty());
    CHECK(p.pending() == 2);
    REQUIRE_FALSE(p.push(rec(ChangeEventType::insert, "users", "1", 30)));
    CHECK(p.pending() == 0);
    CHECK_FALSE(p.next_deadline());

    // One envelope per audience: two type topics and three entity topics.
    REQUIRE(f.sent.size() == 5);
    const auto* orders = f.to_topic("entity:orders");
    REQUIRE(orders);
    CHECK(orders->envelope["type"] == "METRICS_UPDATE");
    CHECK(orders->envelope["topic"] == "entity:orders");
    CHECK(orders->envelope["timestamp"] == wsgate::format_iso8601(f.clock->now()));
    const auto& updates = orders->envelope["updates"];
    REQUIRE(updates.size() == 2);
    CHECK(updates[0] == json{{"eventType", "INSERT"},
                             {"timestamp", 1'700'000'000'010},
                             {"data", {{"entity_id", "1"}, {"v", 10}}}});
    CHECK(updates[1]["data"]["v"] == 20);
    const auto* users1 = f.to_topic("entity:users:1");
    REQUIRE(users1);
    REQUIRE(users1->envelope["updates"].size() == 1);
    CHECK(users1->envelope["updates"][0]["data"]["v"] == 30);
    CHECK(f.to_topic("entity:orders:1")->envelope["updates"].size() == 1);

    const auto st = p.stats();
    CHECK(st.records_in == 3);
    CHECK(st.batches == 1);
    CHECK(st.updates_out == 3);
    CHECK(st.envelopes == 5);
}

TEST_CASE("a batch closes when its window has passed on the injected clock", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    CHECK(p.poll() == 0);
    CHECK_FALSE(p.next_deadline());
    const auto opened = f.clock->now();
    p.push(rec(ChangeEventType::modify, "orders", "1", 1));
    REQUIRE(p.next_deadline());
    CHECK(*p.next_deadline() == opened + std::chrono::seconds{5});

    f.clock->advance(std::chrono::seconds{3});
    p.push(rec(ChangeEventType::modify, "orders", "2", 2));  // joins the open batch; window unchanged
    CHECK(*p.next_deadline() == opened + std::chrono::seconds{5});
    f.clock->advance(std::chrono::milliseconds{1999});
    CHECK(p.poll() == 0);
    CHECK(f.sent.empty());
    f.clock->advance(std::chrono::milliseconds{1});
    CHECK(p.poll() == 1);
    REQUIRE(f.to_topic("entity:orders"));
    CHECK(f.to_topic("entity:orders")->envelope["updates"].size() == 2);
    CHECK(p.poll() == 0);
    CHECK(p.flush() == 0);

    // A clock that went backwards never closes a batch early.
    p.push(rec(ChangeEventType::modify, "orders", "3", 3));
    CHECK(p.poll(f.clock->now() - std::chrono::hours{1}) == 0);
    CHECK(p.pending() == 1);
    CHECK(p.flush() == 1);
    CHECK(p.pending() == 0);
    CHECK(p.stats().batches == 2);
}

TEST_CASE("coalescing merges repeated changes to one item as documented", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    using T = ChangeEventType;

    // a: INSERT then MODIFY → INSERT with the latest image
    p.push(rec(T::insert, "o", "a", 1));
    p.push(rec(T::modify, "o", "a", 2));
    // b: MODIFY then REMOVE → REMOVE
    p.push(rec(T::modify, "o", "b", 10));
    p.push(rec(T::remove, "o", "b", 11));
    // c: INSERT then REMOVE → nothing
    p.push(rec(T::insert, "o", "c", 20));
    p.push(rec(T::remove, "o", "c", 21));
    // d: MODIFY then MODIFY → MODIFY with the latest image and the first old image
    p.push(rec(T::modify, "o", "d", 30));
    p.push(rec(T::modify, "o", "d", 31));
    // e: REMOVE then INSERT → MODIFY
    p.push(rec(T::remove, "o", "e", 40));
    p.push(rec(T::insert, "o", "e", 41));
    // same id, other type: a separate item
    p.push(rec(T::insert, "x", "a", 50));
    CHECK(p.pending() == 5);
    p.flush();

    const auto* all = f.to_topic("entity:o");
    REQUIRE(all);
    const auto& u = all->envelope["updates"];
    REQUIRE(u.size() == 4);  // a, b, d, e in first-change order
    CHECK(u[0]["eventType"] == "INSERT");
    CHECK(u[0]["data"]["v"] == 2);
    CHECK(u[0]["timestamp"] == 1'700'000'000'002);
    CHECK(u[1]["eventType"] == "REMOVE");
    CHECK(u[1]["data"] == json{{"entity_id", "b"}, {"v", 10}});  // the removed item
    CHECK(u[2]["eventType"] == "MODIFY");
    CHECK(u[2]["data"]["v"] == 31);
    CHECK(u[3]["eventType"] == "MODIFY");
    CHECK(u[3]["data"]["v"] == 41);
    CHECK_FALSE(f.to_topic("entity:o:c"));
    REQUIRE(f.to_topic("entity:x:a"));
    CHECK(f.to_topic("entity:x:a")->envelope["updates"][0]["data"]["v"] == 50);

    const auto st = p.stats();
    CHECK(st.records_in == 11);
    CHECK(st.records_coalesced == 5);
    CHECK(st.records_cancelled == 1);
    CHECK(st.updates_out == 5);
}

TEST_CASE("coalescing keeps the pre-batch old image and can report it", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamSettings s;
    s.include_old_image = true;
    s.include_keys = true;
    s.publish_to_type_topic = false;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink(), s};
    p.push(rec(ChangeEventType::modify, "o", "d", 30));  // old v=29
    p.push(rec(ChangeEventType::modify, "o", "d", 31));  // old v=30
    p.flush();
    REQUIRE(f.sent.size() == 1);
    const auto& u = f.sent[0].envelope["updates"][0];
    CHECK(u["oldData"]["v"] == 29);
    CHECK(u["data"]["v"] == 31);
    CHECK(u["keys"] == json{{"entity_id", "d"}});
    CHECK(u["entityType"] == "o");
}

TEST_CASE("an item inserted and removed within a batch comes back if inserted again", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    p.push(rec(ChangeEventType::insert, "o", "c", 1));
    p.push(rec(ChangeEventType::remove, "o", "c", 2));
    CHECK(p.pending() == 0);
    p.push(rec(ChangeEventType::insert, "o", "c", 3));
    CHECK(p.pending() == 1);
    p.flush();
    REQUIRE(f.to_topic("entity:o:c"));
    CHECK(f.to_topic("entity:o:c")->envelope["updates"][0]["data"]["v"] == 3);

    // A batch whose updates all cancelled emits nothing.
    f.sent.clear();
    p.push(rec(ChangeEventType::insert, "o", "z", 1));
    p.push(rec(ChangeEventType::remove, "o", "z", 2));
    CHECK(p.flush() == 1);
    CHECK(f.sent.empty());
    CHECK(p.stats().batches == 1);
}

TEST_CASE("a record not newer than the batched one for its item is dropped", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    p.push(rec(ChangeEventType::modify, "o", "a", 5, "0000000000000000000500"));
    p.push(rec(ChangeEventType::modify, "o", "a", 3, "300"));  // older
    p.push(rec(ChangeEventType::modify, "o", "a", 4, "500"));  // redelivered
    p.push(rec(ChangeEventType::modify, "o", "a", 6, "99999999999999999999999999999999999999"));
    p.flush();
    REQUIRE(f.to_topic("entity:o:a"));
    CHECK(f.to_topic("entity:o:a")->envelope["updates"][0]["data"]["v"] == 6);
    CHECK(p.stats().records_stale == 2);
}

TEST_CASE("without coalescing every record is its own update", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamSettings s;
    s.coalesce = false;
    s.max_batch_records = 4;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink(), s};
    p.push(rec(ChangeEventType::insert, "o", "a", 1));
    p.push(rec(ChangeEventType::modify, "o", "a", 2));
    p.push(rec(ChangeEventType::remove, "o", "a", 3));
    CHECK(p.pending() == 3);
    p.push(rec(ChangeEventType::insert, "o", "a", 4));
    REQUIRE(f.to_topic("entity:o:a"));
    const auto& u = f.to_topic("entity:o:a")->envelope["updates"];
    REQUIRE(u.size() == 4);
    CHECK(u[0]["eventType"] == "INSERT");
    CHECK(u[1]["eventType"] == "MODIFY");
    CHECK(u[2]["eventType"] == "REMOVE");
    CHECK(u[2]["data"]["v"] == 2);  // REMOVE carries the old image
    CHECK(u[3]["eventType"] == "INSERT");
}

TEST_CASE("a REMOVE without an old image carries its keys as data", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    auto r = rec(ChangeEventType::remove, "o", "k", 1);
    r.old_image = nullptr;
    p.push(std::move(r));
    p.flush();
    REQUIRE(f.to_topic("entity:o:k"));
    CHECK(f.to_topic("entity:o:k")->envelope["updates"][0]["data"] == json{{"entity_id", "k"}});
}

TEST_CASE("audiences follow the settings: everyone, permission, custom type and prefix", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamSettings s;
    s.publish_to_everyone = true;
    s.publish_to_entity_topic = false;
    s.required_permission = "read_metrics";
    s.envelope_type = "metrics_update";
    s.topic_prefix = "db";
    wsgate::ChangeStreamProcessor p{f.clock, f.sink(), s};
    p.push(rec(ChangeEventType::insert, "a", "1", 1));
    p.push(rec(ChangeEventType::insert, "b", "1", 2));
    p.flush();
    REQUIRE(f.sent.size() == 3);
    CHECK(f.sent[0].audience.kind == wsgate::Audience::Kind::everyone);
    CHECK(f.sent[0].envelope["updates"].size() == 2);
    CHECK_FALSE(f.sent[0].envelope.contains("topic"));
    for (const auto& e : f.sent) {
        CHECK(e.audience.required_permission == "read_metrics");
        CHECK(e.envelope["type"] == "metrics_update");
    }
    CHECK(f.to_topic("db:a"));
    CHECK(f.to_topic("db:b"));
}

TEST_CASE("records without a usable entity type or id are refused and counted", "[stream]") {
    Fixture f;
    wsgate::ChangeStreamProcessor p{f.clock, f.sink()};
    auto r = rec(ChangeEventType::insert, "", "1", 1);
    CHECK(p.push(r) == change_stream_errc::bad_entity_type);
    r.entity_type = "a:b";
    CHECK(p.push(r) == change_stream_errc::bad_entity_type);
    r.entity_type = "a";
    r.keys = json::object();
    CHECK(p.push(r) == change_stream_errc::bad_entity_id);
    r.keys = json{{"entity_id", nullptr}};
    CHECK(p.push(r) == change_stream_errc::bad_entity_id);
    CHECK(p.pending() == 0);
    CHECK(p.stats().records_rejected == 4);
    CHECK(p.stats().records_in == 0);
    CHECK(p.flush() == 0);
}

TEST_CASE("misconfiguration throws at construction", "[stream]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    auto sink = [](const wsgate::Envelope&, const wsgate::Audience&) {};
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(nullptr, sink), std::invalid_argument);
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(clock, nullptr), std::invalid_argument);
    wsgate::ChangeStreamSettings s;
    s.max_batch_records = 0;
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(clock, sink, s), std::invalid_argument);
    s = {};
    s.topic_prefix = "a:b";
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(clock, sink, s), std::invalid_argument);
    s = {};
    s.batch_window = wsgate::Duration{-1};
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(clock, sink, s), std::invalid_argument);
}

TEST_CASE("a throwing sink is counted and the other envelopes still go out", "[stream]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    std::vector<std::string> topics;
    wsgate::ChangeStreamProcessor p{clock, [&](const wsgate::Envelope& e, const wsgate::Audience&) {
                                        topics.push_back(*e.topic());
                                        if (topics.size() == 1) throw std::runtime_error("sink down");
                                    }};
    p.push(rec(ChangeEventType::insert, "o", "1", 1));
    CHECK_NOTHROW(p.flush());
    CHECK(topics == std::vector<std::string>{"entity:o", "entity:o:1"});
    CHECK(p.stats().sink_failures == 1);
    CHECK(p.stats().envelopes == 2);
}

TEST_CASE("a sink may push; batches are emitted in order without deadlock", "[stream]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    wsgate::ChangeStreamSettings s;
    s.max_batch_records = 1;
    s.publish_to_entity_topic = false;
    std::vector<int> seen;
    wsgate::ChangeStreamProcessor* self = nullptr;
    wsgate::ChangeStreamProcessor p{clock,
                                    [&](const wsgate::Envelope& e, const wsgate::Audience&) {
                                        const int v = e.to_json(clock->now())["updates"][0]["data"]["v"];
                                        seen.push_back(v);
                                        if (v < 5) self->push(rec(ChangeEventType::insert, "o", std::to_string(v + 1), v + 1));
                                    },
                                    s};
    self = &p;
    p.push(rec(ChangeEventType::insert, "o", "1", 1));
    CHECK(seen == std::vector<int>{1, 2, 3, 4, 5});
    CHECK(p.stats().batches == 5);
}

TEST_CASE("concurrent pushes lose nothing", "[stream]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    std::mutex mu;
    std::set<std::string> ids;
    std::size_t updates = 0;
    wsgate::ChangeStreamSettings s;
    s.publish_to_entity_topic = false;
    wsgate::ChangeStreamProcessor p{clock,
                                    [&](const wsgate::Envelope& e, const wsgate::Audience&) {
                                        const auto j = e.to_json(clock->now());
                                        std::lock_guard lock{mu};
                                        for (const auto& u : j["updates"]) {
                                            ++updates;
                                            ids.insert(u["data"]["entity_id"].get<std::string>());
                                        }
                                    },
                                    s};
    constexpr int threads = 4;
    constexpr int per_thread = 1000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i)
                p.push(rec(ChangeEventType::insert, "o", std::to_string(t) + "-" + std::to_string(i), i));
        });
    for (auto& th : pool) th.join();
    p.flush();
    CHECK(updates == threads * per_thread);
    CHECK(ids.size() == threads * per_thread);
    CHECK(p.stats().updates_out == threads * per_thread);
    CHECK(p.stats().batches == threads * per_thread / 100);
}

// ---- with a real Gateway --------------------------------------------------------------------

TEST_CASE("a client subscribed to entity:orders:42 hears only order 42", "[stream][gateway]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings gs;
    gs.router.topic_rules = {{"entity:*", "", "", /*anonymous_read=*/true}};
    wsgate::Gateway gw{gs, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>(), clock};

    auto join = [&](const std::string& topic) {
        auto c = gw.on_connect({});
        REQUIRE(c.accepted);
        transport->open(c.id);
        REQUIRE_FALSE(gw.on_message(c.id, json{{"type", "subscribe"}, {"topic", topic}}.dump()));
        transport->drain(c.id);  // the ack
        return c.id;
    };
    const auto one = join("entity:orders:42");
    const auto all_orders = join("entity:orders");
    const auto users = join("entity:users");

    wsgate::ChangeStreamProcessor p{clock, [&](const wsgate::Envelope& e, const wsgate::Audience& a) {
                                        gw.publish(e, a);
                                    }};
    std::error_code ec;
    for (const auto& [id, type] : std::vector<std::pair<std::string, std::string>>{
             {"42", "orders"}, {"43", "orders"}, {"42", "orders"}, {"44", "orders"}}) {
        json j = {{"eventName", "MODIFY"},
                  {"keys", {{"entity_id", id}}},
                  {"newImage", {{"entity_id", id}, {"entity_type", type}, {"n", 1}}}};
        auto r = wsgate::parse_change_record(j, ec);
        REQUIRE(r);
        REQUIRE_FALSE(p.push(std::move(*r)));
    }
    clock->advance(std::chrono::seconds{5});
    REQUIRE(p.poll() == 1);

    const auto got_one = transport->drain(one);
    REQUIRE(got_one.size() == 1);
    const auto env = json::parse(got_one[0]);
    CHECK(env["type"] == "METRICS_UPDATE");
    CHECK(env["topic"] == "entity:orders:42");
    REQUIRE(env["updates"].size() == 1);  // two changes to 42 coalesced
    CHECK(env["updates"][0]["data"]["entity_id"] == "42");

    const auto got_all = transport->drain(all_orders);
    REQUIRE(got_all.size() == 1);
    CHECK(json::parse(got_all[0])["updates"].size() == 3);
    CHECK(transport->drain(users).empty());
}

TEST_CASE("the everyone target sends one batch message to every connection, subscribed or not",
          "[stream][gateway][everyone]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings gs;
    gs.router.topic_rules = {{"entity:*", "", "", /*anonymous_read=*/true}};
    wsgate::Gateway gw{gs, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>(), clock};
    std::vector<wsgate::ConnectionId> clients;
    for (int i = 0; i < 3; ++i) {
        auto c = gw.on_connect({});
        REQUIRE(c.accepted);
        transport->open(c.id);
        clients.push_back(c.id);
    }
    // One of them subscribed to a topic as well: it still gets the batch exactly once.
    REQUIRE_FALSE(gw.on_message(clients[0], R"({"type":"subscribe","topic":"entity:orders"})"));
    transport->drain(clients[0]);

    std::vector<wsgate::Audience::Kind> audiences;
    wsgate::ChangeStreamProcessor p{clock,
                                    [&](const wsgate::Envelope& e, const wsgate::Audience& a) {
                                        audiences.push_back(a.kind);
                                        gw.publish(e, a);
                                    },
                                    wsgate::ChangeStreamSettings::everyone()};
    CHECK(p.settings().max_batch_records == 100);  // the other defaults stay
    CHECK(p.settings().batch_window == std::chrono::seconds{5});
    p.push(rec(ChangeEventType::insert, "orders", "1", 1));
    p.push(rec(ChangeEventType::insert, "users", "u", 2));
    p.push(rec(ChangeEventType::modify, "orders", "1", 3));  // coalesced with the INSERT
    CHECK(p.flush() == 1);

    CHECK(audiences == std::vector<wsgate::Audience::Kind>{wsgate::Audience::Kind::everyone});
    for (const auto& id : clients) {
        const auto frames = transport->drain(id);
        REQUIRE(frames.size() == 1);
        const auto env = json::parse(frames[0]);
        CHECK(env["type"] == "METRICS_UPDATE");
        CHECK_FALSE(env.contains("topic"));
        REQUIRE(env["updates"].size() == 2);
        CHECK(env["updates"][0]["eventType"] == "INSERT");
        CHECK(env["updates"][0]["data"]["v"] == 3);
        CHECK(env["updates"][1]["data"]["entity_id"] == "u");
    }
    const auto st = p.stats();
    CHECK(st.batches == 1);
    CHECK(st.envelopes == 1);
    CHECK(st.updates_out == 2);
}

TEST_CASE("a processor with no audience enabled is refused", "[stream][everyone]") {
    auto clock = std::make_shared<wsgate::ManualClock>();
    wsgate::ChangeStreamSettings s;
    s.publish_to_type_topic = false;
    s.publish_to_entity_topic = false;
    CHECK_THROWS_AS(wsgate::ChangeStreamProcessor(clock, [](const wsgate::Envelope&, const wsgate::Audience&) {}, s),
                    std::invalid_argument);
    s.publish_to_everyone = true;
    CHECK_NOTHROW(wsgate::ChangeStreamProcessor(clock, [](const wsgate::Envelope&, const wsgate::Audience&) {}, s));
}

TEST_CASE("the statistics render as Prometheus text", "[stream][metrics]") {
    Fixture f;
    int calls = 0;
    wsgate::ChangeStreamProcessor p{f.clock,
                                    [&](const wsgate::Envelope&, const wsgate::Audience&) {
                                        if (++calls == 1) throw std::runtime_error("down");
                                    },
                                    wsgate::ChangeStreamSettings::everyone()};
    p.push(rec(ChangeEventType::insert, "o", "1", 1));
    p.push(rec(ChangeEventType::modify, "o", "1", 2));
    CHECK(p.push(rec(ChangeEventType::insert, "", "1", 1)) == change_stream_errc::bad_entity_type);
    p.flush();
    p.push(rec(ChangeEventType::insert, "o", "2", 5));  // left open: pending
    const auto text = p.prometheus_text();
    for (const char* line :
         {"# TYPE wsgate_change_stream_records_in_total counter\nwsgate_change_stream_records_in_total 3\n",
          "\nwsgate_change_stream_records_rejected_total 1\n", "\nwsgate_change_stream_records_coalesced_total 1\n",
          "\nwsgate_change_stream_updates_out_total 1\n", "\nwsgate_change_stream_batches_total 1\n",
          "\nwsgate_change_stream_envelopes_total 1\n", "\nwsgate_change_stream_sink_failures_total 1\n",
          "# TYPE wsgate_change_stream_pending_updates gauge\nwsgate_change_stream_pending_updates 1\n"}) {
        INFO(line);
        CHECK(text.find(line) != std::string::npos);
    }
    CHECK(p.stats().prometheus_text().find("pending_updates") == std::string::npos);
}
