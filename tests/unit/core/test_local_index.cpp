// The node-local delivery index: with a shared store (Redis-like), a Gateway resolves every
// publish from its own connections per topic and per user, never from the store, and keeps that
// index in step with subscribe, unsubscribe, token refresh and every way a connection ends.

#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::ScriptedAuthorizer;
using wsgate::test::connect_as;
using nlohmann::json;

namespace {

/**
 * The in-memory store presented as a shared one (`shared()` true, as Redis): Gateways on it
 * deliver only to their own connections. Counts the calls a per-publish resolution would make;
 * `fail_puts` refuses record writes as an unreachable backend does.
 */
class SharedMemoryStore final : public ConnectionStore {
public:
    std::atomic<int> resolves{0};
    std::atomic<int> subscriber_lookups{0};
    std::atomic<bool> fail_puts{false};
    InMemoryConnectionStore inner;

    void put(const ConnectionRecord& r) override {
        if (fail_puts) throw StoreError(store_errc::unavailable, "backend down");
        inner.put(r);
    }
    std::optional<ConnectionRecord> get(const ConnectionId& id) override { return inner.get(id); }
    bool remove(const ConnectionId& id) override { return inner.remove(id); }
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return inner.touch(id, now, e); }
    bool subscribe(const ConnectionId& id, const std::string& t) override { return inner.subscribe(id, t); }
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t max) override {
        return inner.subscribe_capped(id, t, max);
    }
    bool unsubscribe(const ConnectionId& id, const std::string& t) override { return inner.unsubscribe(id, t); }
    std::vector<std::string> topics_of(const ConnectionId& id) override { return inner.topics_of(id); }
    std::vector<ConnectionId> subscribers(const std::string& t) override {
        ++subscriber_lookups;
        return inner.subscribers(t);
    }
    std::vector<ConnectionId> connections_of_user(const std::string& u) override { return inner.connections_of_user(u); }
    ScanPage scan(const std::string& c, std::size_t n) override { return inner.scan(c, n); }
    std::vector<ConnectionRecord> expire(TimePoint now) override { return inner.expire(now); }
    std::size_t count() override { return inner.count(); }
    ResolvedAudience resolve(const Audience& a) override {
        ++resolves;
        return inner.resolve(a);
    }
    bool shared() const noexcept override { return true; }
    std::size_t remove_node(const std::string& n) override { return inner.remove_node(n); }
    void renew_lease(const std::string& n, TimePoint now, Duration l) override { inner.renew_lease(n, now, l); }
    bool holds_lease(const std::string& n, TimePoint now) override { return inner.holds_lease(n, now); }
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override { return inner.reap_expired_nodes(now, limit); }
    bool supports_streams() const noexcept override { return true; }
    StreamPosition append(const std::string& t, std::string_view body, TimePoint now, const HistoryRetention& k) override {
        return inner.append(t, body, now, k);
    }
    StreamRead read_stream(const std::string& t, std::uint64_t after, std::size_t limit, TimePoint nb) override {
        return inner.read_stream(t, after, limit, nb);
    }
    StreamRead latest(const std::string& t, std::size_t limit, TimePoint nb) override { return inner.latest(t, limit, nb); }
    void save_cursor(const std::string& k, const std::string& t, const StreamPosition& p, TimePoint now, Duration ttl) override {
        inner.save_cursor(k, t, p, now, ttl);
    }
    std::optional<StreamPosition> load_cursor(const std::string& k, const std::string& t, TimePoint now) override {
        return inner.load_cursor(k, t, now);
    }
    std::vector<PresenceMember> presence(const std::string& t) override { return inner.presence(t); }
};

GatewaySettings node_settings(const std::string& node_id) {
    GatewaySettings s;
    s.node_id = node_id;
    s.rate_per_second = 0;
    s.max_connections_per_user = 0;
    TopicRule room{"room:*", "read", "post"};
    TopicRule vip{"vip:*", "vip", ""};
    TopicRule feed{"feed:*", "read", "post"};
    feed.history_size = 10;
    s.router.topic_rules = {room, vip, feed};
    return s;
}

/// One node: a Gateway on the shared store, with its own transport.
struct Node {
    std::shared_ptr<InMemoryTransport> transport = std::make_shared<InMemoryTransport>();
    std::unique_ptr<Gateway> gw;

    Node(const std::string& id, std::shared_ptr<SharedMemoryStore> store, std::shared_ptr<ManualClock> clock)
        : gw(std::make_unique<Gateway>(node_settings(id), std::move(store), transport,
                                       std::make_shared<ScriptedAuthorizer>(), std::move(clock))) {}

    ConnectionId connect(const std::string& as) {
        auto id = connect_as(*gw, *transport, as);
        REQUIRE_FALSE(id.empty());
        return id;
    }
    void subscribe(const ConnectionId& id, const std::string& topic) {
        auto rec = gw->store().get(id);
        REQUIRE(rec);
        REQUIRE(gw->subscribe(*rec, topic));
    }
    /// The `data` of every `news` frame queued for `id`, drained.
    std::vector<std::string> received(const ConnectionId& id) {
        std::vector<std::string> out;
        for (const auto& f : transport->drain(id)) {
            auto j = json::parse(f);
            if (j.value("type", "") == "news") out.push_back(j.value("data", ""));
        }
        return out;
    }
    BroadcastReport publish(const std::string& data, const Audience& a) {
        return gw->publish(Envelope{"news"}.data(data), a);
    }
};

using Strings = std::vector<std::string>;

struct Cluster {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
    std::shared_ptr<SharedMemoryStore> store = std::make_shared<SharedMemoryStore>();
    Node a{"node-a", store, clock};
    Node b{"node-b", store, clock};
};

}  // namespace

TEST_CASE("with a shared store, every audience is resolved from the node's own index, filtered, with no store call",
          "[gateway][local_index]") {
    Cluster c;
    auto& a = c.a;
    const auto phone = a.connect("user:ann:phone:read");
    const auto laptop = a.connect("user:ann:laptop:read,vip");
    const auto bob = a.connect("user:bob:tablet:read");
    const auto kiosk = a.connect("public:kiosk:read");
    // Node B's connections are in the same store but not this node's to deliver to.
    const auto carl = c.b.connect("user:carl:desk:read");
    const auto ann_b = c.b.connect("user:ann:watch:read,vip");
    for (const auto& id : {phone, laptop, bob, kiosk}) a.subscribe(id, "room:1");
    a.subscribe(laptop, "vip:1");
    c.b.subscribe(carl, "room:1");
    c.b.subscribe(ann_b, "room:1");
    REQUIRE(c.store->inner.subscribers("room:1").size() == 6);
    const auto size = a.gw->local_index_size();
    CHECK(size.topics == 2);
    CHECK(size.subscriptions == 5);
    CHECK(size.users == 2);             // ann and bob; the public kiosk has no user id
    CHECK(size.user_connections == 3);
    c.store->resolves = 0;
    c.store->subscriber_lookups = 0;

    auto got = [&](const std::vector<ConnectionId>& ids, const std::string& data) {
        for (const auto& id : {phone, laptop, bob, kiosk}) {
            INFO(data);
            const bool expected = std::find(ids.begin(), ids.end(), id) != ids.end();
            CHECK(a.received(id) == (expected ? Strings{data} : Strings{}));
        }
        CHECK(c.b.received(carl).empty());
        CHECK(c.b.received(ann_b).empty());
    };

    SECTION("a topic: its local subscribers, with the topic's read permission and exclusions") {
        auto all = a.publish("room", Audience::topic("room:1"));
        CHECK(all.targets == 4);
        CHECK(all.delivered == 4);
        CHECK(all.filtered == 0);
        got({phone, laptop, bob, kiosk}, "room");

        ConnectionRecord sender;
        sender.id = phone;
        sender.principal.user_id = "ann";
        sender.principal.device_id = "phone";
        auto others = a.publish("not phone", Audience::topic("room:1").except_sender(sender));
        CHECK(others.delivered == 3);
        CHECK(others.filtered == 1);
        got({laptop, bob, kiosk}, "not phone");

        auto by_id = a.publish("not bob", Audience::topic("room:1").except_connection(bob));
        CHECK(by_id.delivered == 3);
        got({phone, laptop, kiosk}, "not bob");

        auto vip_only = a.publish("vip", Audience::topic("room:1").requiring("vip"));
        CHECK(vip_only.delivered == 1);
        CHECK(vip_only.filtered == 3);
        got({laptop}, "vip");

        // The rule's read permission is applied per publish (vip:* needs `vip`).
        auto rule = a.publish("rule", Audience::topic("vip:1"));
        CHECK(rule.delivered == 1);
        got({laptop}, "rule");

        auto nobody = a.publish("nobody", Audience::topic("room:2"));
        CHECK(nobody.targets == 0);
        got({}, "nobody");
    }
    SECTION("a user, a set of users and explicit connections: only those on this node, each once") {
        auto ann = a.publish("ann", Audience::user("ann"));
        CHECK(ann.delivered == 2);
        got({phone, laptop}, "ann");
        auto ann_not_phone = a.publish("ann not phone", Audience::user("ann").except_device("phone"));
        CHECK(ann_not_phone.delivered == 1);
        CHECK(ann_not_phone.filtered == 1);
        got({laptop}, "ann not phone");
        auto users = a.publish("users", Audience::users({"ann", "bob", "ann", "", "zed"}));
        CHECK(users.targets == 3);
        CHECK(users.delivered == 3);
        got({phone, laptop, bob}, "users");
        auto vip_users = a.publish("vip users", Audience::users({"ann", "bob"}).requiring("vip"));
        CHECK(vip_users.delivered == 1);
        CHECK(vip_users.filtered == 2);
        got({laptop}, "vip users");
        auto ids = a.publish("ids", Audience::connections({bob, carl, bob, "ghost", kiosk}));
        CHECK(ids.targets == 2);
        CHECK(ids.delivered == 2);
        got({bob, kiosk}, "ids");
        // send_to_user is a user audience too.
        CHECK(a.gw->send_to_user("ann", Envelope{"news"}.data("dm"), "laptop").delivered == 1);
        got({phone}, "dm");
    }
    SECTION("everyone: every local connection, filtered") {
        auto all = a.publish("all", Audience::everyone());
        CHECK(all.delivered == 4);
        got({phone, laptop, bob, kiosk}, "all");
        auto vip = a.publish("all vip", Audience::everyone().requiring("vip"));
        CHECK(vip.delivered == 1);
        CHECK(vip.filtered == 3);
        got({laptop}, "all vip");
    }
    SECTION("node B resolves its own share the same way") {
        auto rep = c.b.publish("from b", Audience::topic("room:1"));
        CHECK(rep.delivered == 2);
        CHECK(c.b.received(carl) == Strings{"from b"});
        CHECK(c.b.received(ann_b) == Strings{"from b"});
        CHECK(c.b.publish("ann on b", Audience::user("ann")).delivered == 1);
        CHECK(c.b.received(ann_b) == Strings{"ann on b"});
        got({}, "from b");
    }
    CHECK(c.store->resolves == 0);
    CHECK(c.store->subscriber_lookups == 0);
    CHECK(a.gw->metrics().local_fallbacks == 0);
}

TEST_CASE("unsubscribe, a narrowed token, a changed user and every kind of end take a connection out of the index",
          "[gateway][local_index]") {
    Cluster c;
    auto& a = c.a;
    const auto ann = a.connect("user:ann:phone:read,vip");
    const auto bob = a.connect("user:bob:tablet:read");
    a.subscribe(ann, "room:1");
    a.subscribe(ann, "vip:1");
    a.subscribe(bob, "room:1");
    REQUIRE(a.gw->local_index_size().subscriptions == 3);

    SECTION("unsubscribe") {
        CHECK(a.gw->unsubscribe(ann, "room:1").changed);
        CHECK(a.publish("room", Audience::topic("room:1")).delivered == 1);
        CHECK(a.received(ann).empty());
        CHECK(a.received(bob) == Strings{"room"});
        CHECK(a.gw->local_index_size().subscriptions == 2);
        CHECK_FALSE(a.gw->unsubscribe(ann, "room:1").changed);  // twice: nothing more to take out
        CHECK(a.gw->local_index_size().subscriptions == 2);
        CHECK(a.gw->unsubscribe(bob, "room:1").changed);
        CHECK(a.gw->local_index_size().topics == 1);  // room:1 has no local member left
    }
    SECTION("a refreshed principal is filtered by its new permissions from the next publish") {
        Principal narrowed;
        narrowed.kind = PrincipalKind::user;
        narrowed.user_id = "ann";
        narrowed.device_id = "phone";
        narrowed.permissions = {"read"};
        REQUIRE(a.gw->refresh_principal(ann, narrowed));
        auto vip = a.publish("vip", Audience::topic("vip:1"));  // still subscribed, no longer admitted
        CHECK(vip.delivered == 0);
        CHECK(vip.filtered == 1);
        CHECK(a.received(ann).empty());
        // drop_unreadable (what the refresh route runs next) takes the topic out of the index too.
        CHECK(a.gw->drop_unreadable(ann, narrowed) == Strings{"vip:1"});
        CHECK(a.gw->local_index_size().topics == 1);
        CHECK(a.publish("vip again", Audience::topic("vip:1")).targets == 0);
        CHECK(a.publish("room", Audience::topic("room:1")).delivered == 2);
        CHECK(a.received(ann) == Strings{"room"});
        // A refresh that grants more widens the audience at once.
        narrowed.permissions = {"read", "extra"};
        REQUIRE(a.gw->refresh_principal(ann, narrowed));
        CHECK(a.publish("extra", Audience::topic("room:1").requiring("extra")).delivered == 1);
        CHECK(a.received(ann) == Strings{"extra"});
    }
    SECTION("a refresh that changes the user id moves the connection to the new user") {
        Principal other;
        other.kind = PrincipalKind::user;
        other.user_id = "anne";
        other.permissions = {"read"};
        REQUIRE(a.gw->refresh_principal(ann, other));
        CHECK(a.publish("old", Audience::user("ann")).targets == 0);
        CHECK(a.publish("new", Audience::user("anne")).delivered == 1);
        CHECK(a.received(ann) == Strings{"new"});
        CHECK(a.gw->local_index_size().users == 2);
    }
    SECTION("a client close") {
        a.gw->on_disconnect(ann);
        CHECK(a.publish("after", Audience::topic("vip:1")).targets == 0);
        CHECK(a.publish("after", Audience::user("ann")).targets == 0);
        CHECK(a.gw->local_index_size().subscriptions == 1);
        a.gw->on_disconnect(bob);
        CHECK(a.gw->local_index_size().empty());
    }
    SECTION("a Gone during a publish") {
        a.transport->vanish(bob);
        auto rep = a.publish("gone", Audience::topic("room:1"));
        CHECK(rep.gone_removed == 1);
        CHECK(rep.delivered == 1);
        CHECK(a.publish("next", Audience::topic("room:1")).targets == 1);
        CHECK(a.gw->local_index_size().users == 1);
    }
    SECTION("expiry at a sweep") {
        c.clock->advance(2h);
        const auto swept = a.gw->sweep();
        CHECK(swept.ttl_expired + swept.max_age == 2);
        CHECK(a.gw->local_count() == 0);
        CHECK(a.gw->local_index_size().empty());
        CHECK(a.publish("late", Audience::everyone()).targets == 0);
    }
    SECTION("a connect the store refused leaves no entry") {
        c.store->fail_puts = true;
        ConnectRequest req;
        req.query["as"] = "user:cat:desk:read";
        CHECK(a.gw->on_connect(req).status == 503);
        c.store->fail_puts = false;
        CHECK(a.gw->local_index_size().users == 2);
        CHECK(a.publish("cat", Audience::user("cat")).targets == 0);
    }
    CHECK(c.store->resolves == 0);
}

TEST_CASE("a subscriber recovering a topic on a shared store gets the replay, then live publications once",
          "[gateway][local_index][streams]") {
    Cluster c;
    auto& a = c.a;
    const auto watcher = a.connect("user:bob:tablet:read");
    a.subscribe(watcher, "feed:1");
    const auto first = a.publish("1", Audience::topic("feed:1"));
    a.publish("2", Audience::topic("feed:1"));
    REQUIRE(first.offset == 1);
    (void)a.received(watcher);

    const auto ann = a.connect("user:ann:phone:read");
    auto rec = a.gw->store().get(ann);
    REQUIRE(rec);
    SubscribeOptions o;
    const auto epoch = c.store->inner.read_stream("feed:1", 0, 0, TimePoint::min()).top.epoch;
    o.since = StreamPosition{1, epoch};
    auto r = a.gw->subscribe(*rec, "feed:1", o);
    REQUIRE_FALSE(r.error);
    CHECK(r.recovery.recovered);
    // Live publications after the replay reach the gated connection through its gate, once.
    auto live = a.publish("3", Audience::topic("feed:1"));
    CHECK(live.delivered == 2);
    CHECK(a.received(ann) == Strings{"2", "3"});
    CHECK(a.received(watcher) == Strings{"3"});
    CHECK(c.store->resolves == 0);
    a.gw->on_disconnect(ann);
    a.gw->on_disconnect(watcher);
    CHECK(a.gw->local_index_size().empty());
}

TEST_CASE("where the store is the index (local_delivery_only false), it resolves every publish",
          "[gateway][local_index]") {
    auto clock = std::make_shared<ManualClock>();
    auto store = std::make_shared<SharedMemoryStore>();
    auto transport = std::make_shared<InMemoryTransport>();
    auto s = node_settings("lambda");
    s.local_delivery_only = false;
    Gateway gw{s, store, transport, std::make_shared<ScriptedAuthorizer>(), clock};
    // A connection another process accepted: only the store knows it.
    ConnectionRecord remote;
    remote.id = "remote-1";
    remote.principal.user_id = "ann";
    remote.principal.permissions = {"read"};
    remote.expires_at = clock->now() + 1h;
    store->inner.put(remote);
    store->inner.subscribe(remote.id, "room:1");
    transport->open(remote.id);
    auto rep = gw.publish(Envelope{"news"}.data("x"), Audience::topic("room:1"));
    CHECK(rep.delivered == 1);
    CHECK(store->resolves == 1);
    CHECK(transport->drain(remote.id).size() == 1);
}

namespace {

/**
 * Checks every send against what the test threads did: a send to a connection whose end completed
 * before the publish began, or to a connection whose unsubscribe from the published topic
 * completed before it began (and that did not subscribe again since), is a violation.
 */
class CheckingTransport final : public Transport {
public:
    // What the publishing thread is doing (sends run on the thread that publishes).
    static thread_local std::uint64_t publish_started;
    static thread_local const std::string* publish_topic;

    std::atomic<std::uint64_t> seq{0};
    std::atomic<int> violations{0};
    std::atomic<std::uint64_t> deliveries{0};

    void ended(const ConnectionId& id) {
        const auto at = ++seq;
        std::lock_guard lock(mu_);
        ended_at_[id] = at;
    }
    void subscribing(const ConnectionId& id, const std::string& topic) {
        const auto at = ++seq;
        std::lock_guard lock(mu_);
        subs_[{id, topic}].subscribe_started = at;
    }
    void unsubscribed(const ConnectionId& id, const std::string& topic) {
        const auto at = ++seq;
        std::lock_guard lock(mu_);
        subs_[{id, topic}].unsubscribe_done = at;
    }
    void vanish(const ConnectionId& id) {
        std::lock_guard lock(mu_);
        gone_.insert(id);
    }

    SendStatus send(const ConnectionId& id, const Payload&) override { return check(id); }
    void send_many(std::span<const ConnectionId> ids, const Payload&, std::span<SendStatus> out) override {
        for (std::size_t i = 0; i < ids.size(); ++i) out[i] = check(ids[i]);
    }
    void close(const ConnectionId&, CloseCode, std::string_view) override {}

private:
    struct Sub {
        std::uint64_t subscribe_started = 0;
        std::uint64_t unsubscribe_done = 0;
    };
    SendStatus check(const ConnectionId& id) {
        std::lock_guard lock(mu_);
        if (publish_started != 0) {
            if (auto it = ended_at_.find(id); it != ended_at_.end() && it->second <= publish_started) ++violations;
            if (publish_topic != nullptr) {
                if (auto it = subs_.find({id, *publish_topic}); it != subs_.end()) {
                    const auto& s = it->second;
                    if (s.unsubscribe_done > s.subscribe_started && s.unsubscribe_done <= publish_started) ++violations;
                }
            }
        }
        if (gone_.count(id)) return SendStatus::gone;
        ++deliveries;
        return SendStatus::ok;
    }
    std::mutex mu_;
    std::unordered_map<ConnectionId, std::uint64_t> ended_at_;
    std::map<std::pair<ConnectionId, std::string>, Sub> subs_;
    std::set<ConnectionId> gone_;
};

thread_local std::uint64_t CheckingTransport::publish_started = 0;
thread_local const std::string* CheckingTransport::publish_topic = nullptr;

}  // namespace

TEST_CASE("subscribe, unsubscribe, end, expiry and Gone racing publishes never reach a connection that left, "
          "and leave the index empty",
          "[gateway][local_index][concurrency]") {
    auto clock = std::make_shared<ManualClock>();
    auto store = std::make_shared<SharedMemoryStore>();
    auto transport = std::make_shared<CheckingTransport>();
    auto settings = node_settings("node-a");
    settings.inactivity_timeout = Duration::zero();
    settings.max_age = Duration::zero();
    Gateway gw{settings, store, transport, std::make_shared<ScriptedAuthorizer>(), clock};
    gw.set_end_hook([&](const ConnectionRecord& rec, EndReason) { transport->ended(rec.id); });

    constexpr int slots_per_thread = 8;
    constexpr int churners = 2;
    constexpr int rounds = 20000;
    const std::vector<std::string> topics = {"room:0", "room:1", "room:2"};
    std::mutex live_mu;
    std::vector<ConnectionId> live;  // every connection made, for the ender and the final check
    std::atomic<int> connected{0};

    auto connect = [&](std::mt19937& rng) {
        ConnectRequest req;
        req.connection_id = make_connection_id();
        Principal p;
        p.kind = PrincipalKind::user;
        p.user_id = "u" + std::to_string(rng() % 6);
        p.device_id = "d" + std::to_string(rng() % 4);
        p.permissions = {"read"};
        // Some tokens run out within the test, so sweeps end them.
        if (rng() % 3 == 0) p.expires_at = clock->now() + std::chrono::seconds{1 + rng() % 5};
        auto r = gw.on_connect(req, p);
        if (!r.accepted) return ConnectionRecord{};
        ++connected;
        ConnectionRecord rec;
        rec.id = r.id;
        rec.principal = p;
        std::lock_guard lock(live_mu);
        live.push_back(r.id);
        return rec;
    };

    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    std::atomic<int> done{0};
    for (int t = 0; t < churners; ++t)
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) + 7);
            std::vector<ConnectionRecord> slots;
            for (int i = 0; i < slots_per_thread; ++i) slots.push_back(connect(rng));
            for (int i = 0; i < rounds; ++i) {
                auto& rec = slots[rng() % slots.size()];
                const auto& topic = topics[rng() % topics.size()];
                switch (rng() % 8) {
                    case 0: rec = connect(rng); break;  // a new connection in this slot
                    case 1: case 2: case 3:
                        transport->subscribing(rec.id, topic);
                        (void)gw.subscribe(rec, topic);
                        break;
                    case 4: case 5:
                        if (!gw.unsubscribe(rec.id, topic).error) transport->unsubscribed(rec.id, topic);
                        break;
                    case 6: gw.on_disconnect(rec.id); break;
                    case 7:
                        if (rng() % 4 == 0) transport->vanish(rec.id);  // the next send reports Gone
                        break;
                }
            }
            ++done;
        });
    threads.emplace_back([&] {
        std::mt19937 rng(99);
        while (!stop) {
            const auto& topic = topics[rng() % topics.size()];
            CheckingTransport::publish_started = transport->seq.load();
            CheckingTransport::publish_topic = &topic;
            (void)gw.publish(Envelope{"news"}, Audience::topic(topic));
            CheckingTransport::publish_topic = nullptr;
            CheckingTransport::publish_started = transport->seq.load();
            (void)gw.publish(Envelope{"news"}, rng() % 2 ? Audience::user("u" + std::to_string(rng() % 6))
                                                          : Audience::everyone());
        }
    });
    threads.emplace_back([&] {
        std::mt19937 rng(5);
        while (!stop) {
            ConnectionId victim;
            {
                std::lock_guard lock(live_mu);
                if (!live.empty()) victim = live[rng() % live.size()];
            }
            if (!victim.empty()) gw.end(victim, EndReason::kicked);
            clock->advance(std::chrono::milliseconds{500});
            (void)gw.sweep();
            std::this_thread::sleep_for(std::chrono::microseconds{200});
        }
    });
    while (done < churners) std::this_thread::sleep_for(std::chrono::milliseconds{5});
    stop = true;
    for (auto& th : threads) th.join();

    CHECK(transport->violations == 0);
    CHECK(transport->deliveries > 0);
    CHECK(connected > churners * slots_per_thread);
    CHECK(gw.metrics().gone_cleanups > 0);
    CHECK(store->resolves == 0);

    // Quiet now: each topic's local audience is exactly the store's view of its subscribers.
    CHECK(gw.local_index_size().user_connections == gw.local_count());
    for (const auto& topic : topics) {
        INFO(topic);
        auto in_store = store->inner.subscribers(topic);
        CHECK(gw.publish(Envelope{"news"}, Audience::topic(topic)).targets == in_store.size());
        CHECK(gw.local_index_size().subscriptions >= in_store.size());
    }
    std::size_t subscriptions = 0;
    for (const auto& topic : topics) subscriptions += store->inner.subscribers(topic).size();
    CHECK(gw.local_index_size().subscriptions == subscriptions);

    // Everything ends: nothing is left behind.
    std::vector<ConnectionId> all;
    {
        std::lock_guard lock(live_mu);
        all = live;
    }
    for (const auto& id : all) gw.end(id, EndReason::shutdown);
    CHECK(gw.local_count() == 0);
    CHECK(gw.local_index_size().empty());
    CHECK(gw.publish(Envelope{"news"}, Audience::everyone()).targets == 0);
}
