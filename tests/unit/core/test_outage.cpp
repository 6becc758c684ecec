// Store and bus outages: a node keeps delivering to its own connections, registers them again
// when the store lost them, and says when a publish may have missed part of its audience.

#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::ScriptedAuthorizer;
using wsgate::test::connect_as;
using nlohmann::json;

namespace {

/**
 * The in-memory store behind a switch: `down` makes every call fail as an unreachable backend
 * does, `fail_after(n)` lets n more calls through first, `wipe()` loses everything (a restart
 * without persistence) and `fail_appends` refuses stream appends only.
 */
class OutageStore final : public ConnectionStore {
public:
    std::atomic<bool> down{false};
    std::atomic<bool> fail_appends{false};
    std::function<void()> after_unsubscribe;  ///< runs inside unsubscribe, once the store has done it

    void wipe() {
        std::lock_guard lock(mu_);
        inner_ = std::make_shared<InMemoryConnectionStore>();
    }
    void fail_after(int calls) { budget_.store(calls); }
    InMemoryConnectionStore& inner() {
        std::lock_guard lock(mu_);
        return *inner_;
    }

    void put(const ConnectionRecord& r) override { s()->put(r); }
    std::optional<ConnectionRecord> get(const ConnectionId& id) override { return s()->get(id); }
    bool remove(const ConnectionId& id) override { return s()->remove(id); }
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return s()->touch(id, now, e); }
    bool subscribe(const ConnectionId& id, const std::string& t) override { return s()->subscribe(id, t); }
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t max) override {
        return s()->subscribe_capped(id, t, max);
    }
    bool unsubscribe(const ConnectionId& id, const std::string& t) override {
        const bool removed = s()->unsubscribe(id, t);
        if (after_unsubscribe) after_unsubscribe();
        return removed;
    }
    std::vector<std::string> topics_of(const ConnectionId& id) override { return s()->topics_of(id); }
    std::vector<ConnectionId> subscribers(const std::string& t) override { return s()->subscribers(t); }
    std::vector<ConnectionId> connections_of_user(const std::string& u) override { return s()->connections_of_user(u); }
    ScanPage scan(const std::string& c, std::size_t n) override { return s()->scan(c, n); }
    std::vector<ConnectionRecord> expire(TimePoint now) override { return s()->expire(now); }
    std::size_t count() override { return s()->count(); }
    ResolvedAudience resolve(const Audience& a) override { return s()->resolve(a); }
    bool shared() const noexcept override { return true; }  // as Redis: local delivery plus a bus
    std::size_t remove_node(const std::string& n) override { return s()->remove_node(n); }
    void renew_lease(const std::string& n, TimePoint now, Duration l) override { s()->renew_lease(n, now, l); }
    bool holds_lease(const std::string& n, TimePoint now) override { return s()->holds_lease(n, now); }
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override { return s()->reap_expired_nodes(now, limit); }
    bool supports_streams() const noexcept override { return true; }
    StreamPosition append(const std::string& t, std::string_view body, TimePoint now, const HistoryRetention& k) override {
        if (fail_appends) throw StoreError(store_errc::read_only, "appends refused");
        return s()->append(t, body, now, k);
    }
    StreamRead read_stream(const std::string& t, std::uint64_t after, std::size_t limit, TimePoint nb) override {
        return s()->read_stream(t, after, limit, nb);
    }
    StreamRead latest(const std::string& t, std::size_t limit, TimePoint nb) override { return s()->latest(t, limit, nb); }
    void save_cursor(const std::string& k, const std::string& t, const StreamPosition& p, TimePoint now, Duration ttl) override {
        s()->save_cursor(k, t, p, now, ttl);
    }
    std::optional<StreamPosition> load_cursor(const std::string& k, const std::string& t, TimePoint now) override {
        return s()->load_cursor(k, t, now);
    }
    std::vector<PresenceMember> presence(const std::string& t) override { return s()->presence(t); }

private:
    std::shared_ptr<InMemoryConnectionStore> s() {
        if (down) throw StoreError(store_errc::unavailable, "backend down");
        if (budget_.load() >= 0 && budget_.fetch_sub(1) <= 0) {
            down = true;
            throw StoreError(store_errc::unavailable, "backend down");
        }
        std::lock_guard lock(mu_);
        return inner_;  // a copy: a wipe() meanwhile leaves this call on the store it started on
    }
    std::mutex mu_;
    std::shared_ptr<InMemoryConnectionStore> inner_ = std::make_shared<InMemoryConnectionStore>();
    std::atomic<int> budget_{-1};
};

/// A bus another node would listen on; `accept` false refuses publishes, `up` false reports it down.
class SwitchBus final : public Bus {
public:
    std::atomic<bool> accept{true};
    std::atomic<bool> up{true};
    std::atomic<int> published{0};
    bool publish(const BusMessage&) override {
        if (!accept) return false;
        ++published;
        return true;
    }
    void set_handler(Handler) override {}
    bool healthy() const noexcept override { return up; }
};

struct Rig {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
    std::shared_ptr<OutageStore> store = std::make_shared<OutageStore>();
    std::shared_ptr<InMemoryTransport> transport = std::make_shared<InMemoryTransport>();
    std::shared_ptr<SwitchBus> bus = std::make_shared<SwitchBus>();
    std::unique_ptr<Gateway> gw;

    /// `local_only`: GatewaySettings::local_delivery_only (by default true: the store says shared).
    explicit Rig(std::optional<bool> local_only = {}) {
        GatewaySettings s;
        s.node_id = "node-a";
        s.local_delivery_only = local_only;
        s.rate_per_second = 0;
        TopicRule room{"room:*", "read", "post"};
        TopicRule feed{"feed:*", "read", "post"};
        feed.history_size = 10;
        s.router.topic_rules = {room, feed};
        gw = std::make_unique<Gateway>(s, store, transport, std::make_shared<ScriptedAuthorizer>(), clock, bus);
    }
    ConnectionId connect(const std::string& as) {
        auto id = connect_as(*gw, *transport, as);
        REQUIRE_FALSE(id.empty());
        return id;
    }
    void subscribe(const ConnectionId& id, const std::string& topic) {
        gw->on_message(id, json{{"type", "subscribe"}, {"topic", topic}}.dump());
        auto got = transport->drain(id);
        REQUIRE(got.size() == 1);
        REQUIRE(json::parse(got[0])["type"] == "ack");
    }
    /// The `data` of every frame of type `type` queued for `id`, drained.
    std::vector<std::string> received(const ConnectionId& id, const std::string& type = "news") {
        std::vector<std::string> out;
        for (const auto& f : transport->drain(id)) {
            auto j = json::parse(f);
            if (j.value("type", "") == type) out.push_back(j.value("data", ""));
        }
        return out;
    }
    BroadcastReport publish(const std::string& topic, const std::string& data) {
        return gw->publish(Envelope{"news"}.data(data), Audience::topic(topic));
    }
};

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("while the store is down, a node delivers to its own subscribers from its index, not degraded",
          "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    const auto bob = r.connect("user:bob:laptop:read");
    const auto cat = r.connect("user:cat:tablet:read");
    r.subscribe(ann, "room:1");
    r.subscribe(bob, "room:1");
    r.subscribe(cat, "room:2");
    REQUIRE(r.gw->health().ok());

    r.store->down = true;
    auto rep = r.publish("room:1", "during");
    CHECK(r.received(ann) == Strings{"during"});
    CHECK(r.received(bob) == Strings{"during"});
    CHECK(r.received(cat).empty());
    CHECK(rep.delivered == 2);
    // The node's own index is the whole local audience: nothing was asked of the store, so
    // nothing was missed because of it (the bus carries the publish to the other nodes).
    CHECK_FALSE(rep.degraded);
    CHECK(rep.degraded_reason.empty());
    CHECK(r.gw->metrics().store_errors == 0);
    CHECK(r.gw->metrics().local_fallbacks == 0);
    CHECK(r.gw->metrics().degraded_publishes == 0);
    CHECK(r.gw->metrics().prometheus_text().find("wsgate_local_fallbacks_total 0") != std::string::npos);
    // The next sweep's lease probe notices the outage.
    r.gw->sweep();
    CHECK_FALSE(r.gw->health().store_ok);
    CHECK(r.gw->health().bus_ok);
    CHECK(std::string{r.gw->health().status()} == "degraded");

    SECTION("the index applies the audience's selection, exclusions and permission") {
        r.gw->publish(Envelope{"news"}.data("to ann"), Audience::user("ann"));
        CHECK(r.received(ann) == Strings{"to ann"});
        CHECK(r.received(bob).empty());
        ConnectionRecord sender;
        sender.id = ann;
        sender.principal.user_id = "ann";
        sender.principal.device_id = "phone";
        auto ex = r.gw->publish(Envelope{"news"}.data("not ann"), Audience::topic("room:1").except_sender(sender));
        CHECK(r.received(ann).empty());
        CHECK(r.received(bob) == Strings{"not ann"});
        CHECK(ex.filtered == 1);
        auto perm = r.gw->publish(Envelope{"news"}.data("secret"), Audience::topic("room:1").requiring("admin"));
        CHECK(perm.delivered == 0);
        CHECK(perm.filtered == 2);
        r.gw->publish(Envelope{"news"}.data("all"), Audience::everyone());
        CHECK(r.received(ann) == Strings{"all"});
        CHECK(r.received(cat) == Strings{"all"});
    }
    SECTION("a subscription change the store refused is not applied locally either") {
        CHECK(r.gw->unsubscribe(bob, "room:1").error == protocol_errc::store_unavailable);
        r.publish("room:1", "still");
        CHECK(r.received(bob) == Strings{"still"});
        ConnectRequest req;
        req.query["as"] = "user:dan";
        CHECK(r.gw->on_connect(req).status == 503);
    }
    SECTION("once the store answers, subscription changes reach the index again") {
        r.store->down = false;
        auto after = r.publish("room:1", "after");
        CHECK_FALSE(after.degraded);
        CHECK(after.degraded_reason.empty());
        CHECK(after.delivered == 2);
        CHECK(r.received(ann) == Strings{"after"});
        CHECK(r.received(bob) == Strings{"after"});
        CHECK_FALSE(r.gw->unsubscribe(bob, "room:1").error);
        r.store->down = true;
        r.publish("room:1", "after unsubscribe");
        CHECK(r.received(bob).empty());
        CHECK(r.received(ann) == Strings{"after unsubscribe"});
    }
}

TEST_CASE("where the store is the index (local_delivery_only false), a store outage falls back to the node's own "
          "connections and is degraded",
          "[gateway][outage]") {
    Rig r{false};
    const auto ann = r.connect("user:ann:phone:read");
    const auto bob = r.connect("user:bob:laptop:read");
    r.subscribe(ann, "room:1");
    r.subscribe(bob, "room:2");
    CHECK_FALSE(r.publish("room:1", "up").degraded);
    CHECK(r.received(ann) == Strings{"up"});

    r.store->down = true;
    auto rep = r.publish("room:1", "during");
    CHECK(rep.delivered == 1);
    CHECK(r.received(ann) == Strings{"during"});
    CHECK(r.received(bob).empty());
    // Connections other processes accepted were not reached: degraded, counted as a fallback.
    CHECK(rep.degraded);
    CHECK(rep.degraded_reason == "store_unavailable");
    CHECK_FALSE(r.gw->health().store_ok);
    CHECK(r.gw->metrics().local_fallbacks == 1);
    CHECK(r.gw->metrics().degraded_publishes == 1);
    CHECK(r.gw->metrics().prometheus_text().find("wsgate_local_fallbacks_total 1") != std::string::npos);
    auto perm = r.gw->publish(Envelope{"news"}.data("secret"), Audience::topic("room:1").requiring("admin"));
    CHECK(perm.delivered == 0);
    CHECK(perm.filtered == 1);
    CHECK(r.gw->metrics().local_fallbacks == 2);
}

TEST_CASE("a store that lost everything gets the node's connections and subscriptions back at the next sweep",
          "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    const auto bob = r.connect("user:bob:laptop:read");
    r.subscribe(ann, "room:1");
    r.subscribe(ann, "room:2");
    r.subscribe(bob, "room:1");
    CHECK(r.gw->sweep().reregistered == 0);

    r.store->wipe();  // a restart without persistence: records, subscriptions and the lease are gone
    // The node's index still reaches its own subscribers; what is lost until the next sweep is
    // the cluster-wide view (presence, counts, a user's connections on other nodes).
    auto lost = r.publish("room:1", "lost");
    CHECK(lost.delivered == 2);
    CHECK_FALSE(lost.degraded);
    CHECK(r.received(ann) == Strings{"lost"});
    CHECK(r.received(bob) == Strings{"lost"});
    CHECK(r.store->inner().subscribers("room:1").empty());

    auto sweep = r.gw->sweep();
    CHECK(sweep.reregistered == 2);
    CHECK(r.store->inner().count() == 2);
    CHECK(r.store->inner().subscribers("room:1").size() == 2);
    CHECK(r.store->inner().topics_of(ann).size() == 2);
    CHECK(r.store->inner().connections_of_user("bob") == std::vector<ConnectionId>{bob});
    CHECK(r.store->inner().holds_lease("node-a", r.clock->now()));
    CHECK(r.gw->metrics().reregistrations == 1);
    CHECK(r.gw->metrics().reregistered == 2);
    CHECK(r.gw->health().ok());

    auto back = r.publish("room:1", "back");
    CHECK_FALSE(back.degraded);
    CHECK(back.delivered == 2);
    CHECK(r.received(ann) == Strings{"back"});
    CHECK(r.received(bob) == Strings{"back"});
    CHECK(r.gw->sweep().reregistered == 0);  // once
}

TEST_CASE("a re-registration cut short by the store failing again is finished by a later sweep", "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    const auto bob = r.connect("user:bob:laptop:read");
    r.subscribe(ann, "room:1");
    r.subscribe(bob, "room:1");
    r.store->wipe();
    r.store->fail_after(3);  // the lease probe, the renewal and one record; then down
    auto first = r.gw->sweep();
    CHECK(first.reregistered <= 1);
    CHECK_FALSE(r.gw->health().store_ok);
    r.store->down = false;
    r.store->fail_after(-1);
    auto second = r.gw->sweep();
    CHECK(second.reregistered == 2);
    CHECK(r.store->inner().subscribers("room:1").size() == 2);
    CHECK(r.gw->sweep().reregistered == 0);
    CHECK(r.gw->health().store_ok == false);  // the failure above is less than 5 s old
}

TEST_CASE("a connection that ends while the store is down is removed from it once it answers", "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    r.subscribe(ann, "room:1");
    std::vector<std::string> topics_at_end;
    r.gw->set_end_hook([&](const ConnectionRecord& rec, EndReason) { topics_at_end = rec.topics; });
    r.store->down = true;
    r.gw->on_disconnect(ann);
    CHECK(r.gw->local_count() == 0);
    CHECK(topics_at_end == Strings{"room:1"});  // the end hook gets the node's copy of the record
    r.store->down = false;
    CHECK(r.store->inner().get(ann).has_value());
    r.gw->sweep();
    CHECK_FALSE(r.store->inner().get(ann).has_value());
    CHECK(r.store->inner().subscribers("room:1").empty());
}

TEST_CASE("a publication the bus refused is degraded; a bus that says it is down makes the node degraded",
          "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    r.subscribe(ann, "room:1");
    r.bus->accept = false;
    auto rep = r.publish("room:1", "local only");
    CHECK(r.received(ann) == Strings{"local only"});
    CHECK(rep.degraded);
    CHECK(rep.degraded_reason == "bus_unavailable");
    CHECK(r.gw->metrics().bus_errors == 1);
    CHECK_FALSE(r.gw->health().bus_ok);
    CHECK(r.gw->health().store_ok);

    Rig quiet;
    quiet.bus->up = false;
    CHECK_FALSE(quiet.gw->health().bus_ok);
    CHECK(std::string{quiet.gw->health().status()} == "degraded");
    quiet.bus->up = true;
    CHECK(quiet.gw->health().ok());
}

TEST_CASE("a topic whose stream cannot append is delivered live without a position, and degraded",
          "[gateway][outage][streams]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    r.subscribe(ann, "feed:1");
    auto kept = r.publish("feed:1", "kept");
    CHECK(kept.offset == 1);
    CHECK_FALSE(kept.degraded);
    r.store->fail_appends = true;
    auto rep = r.publish("feed:1", "unkept");
    CHECK(rep.degraded);
    CHECK(rep.degraded_reason == "history_unavailable");
    CHECK(rep.offset == 0);
    CHECK(rep.delivered == 1);
    auto frames = r.transport->drain(ann);
    REQUIRE(frames.size() == 2);
    CHECK(json::parse(frames[0])["offset"] == 1);
    CHECK_FALSE(json::parse(frames[1]).contains("offset"));
    CHECK(json::parse(frames[1])["data"] == "unkept");

    SECTION("with the whole store down, only the history is missing: delivery comes from the index") {
        r.store->down = true;
        auto both = r.publish("feed:1", "both");
        CHECK(both.degraded_reason == "history_unavailable");
        CHECK(r.received(ann) == Strings{"both"});
    }
}

TEST_CASE("a re-registration racing an unsubscribe does not write the topic back",
          "[gateway][outage]") {
    Rig r;
    const auto ann = r.connect("user:ann:phone:read");
    r.subscribe(ann, "room:1");
    r.subscribe(ann, "room:2");
    // The lease ran out (an outage longer than it): the next sweep registers the node again.
    r.store->inner().renew_lease("node-a", r.clock->now() - std::chrono::seconds{1}, std::chrono::milliseconds{1});
    // Another thread's sweep starts between the store's unsubscribe and the update of the node's
    // copy, and is given time to write the copy back before the unsubscribe goes on.
    std::thread sweeper;
    std::atomic<std::size_t> reregistered{0};
    r.store->after_unsubscribe = [&] {
        if (sweeper.joinable()) return;  // once
        sweeper = std::thread([&] { reregistered = r.gw->sweep().reregistered; });
        std::this_thread::sleep_for(std::chrono::milliseconds{100});
    };
    r.gw->on_message(ann, json{{"type", "unsubscribe"}, {"topic", "room:1"}}.dump());
    REQUIRE(sweeper.joinable());  // the hook ran
    sweeper.join();
    r.store->after_unsubscribe = nullptr;
    CHECK(reregistered == 1);
    CHECK(r.store->inner().topics_of(ann) == Strings{"room:2"});
    CHECK(r.publish("room:1", "gone").delivered == 0);
    CHECK(r.publish("room:2", "kept").delivered == 1);
    r.store->down = true;  // and the node's own copy agrees
    CHECK(r.publish("room:1", "gone").delivered == 0);
    CHECK(r.publish("room:2", "kept").delivered == 1);
}

TEST_CASE("subscribes and unsubscribes racing outages, wipes and re-registrations leave the store as the node sees it",
          "[gateway][outage][concurrency]") {
    Rig r;
    constexpr int conns = 12;
    constexpr int rooms = 4;
    std::vector<ConnectionId> ids;
    for (int i = 0; i < conns; ++i) ids.push_back(r.connect("user:u" + std::to_string(i) + ":d" + std::to_string(i) + ":read"));
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            std::mt19937 rng(t + 1);
            while (!stop) {
                const auto& id = ids[rng() % conns];
                const auto topic = "room:" + std::to_string(rng() % rooms);
                r.gw->on_message(id, json{{"type", rng() % 2 ? "subscribe" : "unsubscribe"}, {"topic", topic}}.dump());
            }
        });
    threads.emplace_back([&] {
        for (unsigned n = 0; !stop; ++n) r.publish("room:" + std::to_string(n % rooms), "x");
    });
    threads.emplace_back([&] {
        while (!stop)
            for (const auto& id : ids) r.transport->drain(id);
    });
    // Outages of every kind while the clients churn, each followed by a sweep that may register
    // the node again.
    for (int round = 0; round < 60; ++round) {
        r.store->down = round % 3 == 1;
        if (round % 5 == 4) r.store->wipe();
        r.clock->advance(std::chrono::seconds{1});
        r.gw->sweep();
        std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
    stop = true;
    for (auto& t : threads) t.join();
    r.store->down = false;
    r.clock->advance(std::chrono::seconds{1});
    r.gw->sweep();
    for (const auto& id : ids) r.transport->drain(id);
    REQUIRE(r.gw->local_count() == conns);

    // Each room reaches, from the node's index, exactly the connections the store lists as its
    // subscribers (a ghost subscription written back by a re-registration, or an index entry the
    // store does not have, would show here); with the store down too.
    for (int room = 0; room < rooms; ++room) {
        const auto topic = "room:" + std::to_string(room);
        INFO(topic);
        auto who_got = [&](const std::string& data) {
            std::vector<ConnectionId> got;
            for (const auto& id : ids)
                if (r.received(id) == Strings{data}) got.push_back(id);
            return got;
        };
        auto in_store = r.store->inner().subscribers(topic);
        std::sort(in_store.begin(), in_store.end());
        auto up = r.publish(topic, "up");
        CHECK_FALSE(up.degraded);
        auto got = who_got("up");
        std::sort(got.begin(), got.end());
        CHECK(got == in_store);
        r.store->down = true;
        auto down = r.publish(topic, "down");
        r.store->down = false;
        CHECK_FALSE(down.degraded);
        got = who_got("down");
        std::sort(got.begin(), got.end());
        CHECK(got == in_store);
    }
}
