// Three demo nodes over one redis-server. Clients on every node keep subscribing to and
// unsubscribing from three topics while two publishers on different nodes publish numbered
// events: every subscription hears every event published after its subscribe ack exactly once and
// in order, and no event whose publish began after its unsubscribe ack.
//
// What is asserted, exactly. Times are steady_clock readings in this process: a publish's `sent`
// is read before its frame is queued, an ack's time after the frame was taken from the client.
// Each publisher publishes one event at a time (the next after the previous one's ack), so its
// sequence numbers, send times and, per topic, stream offsets grow together.
//  - Never: the same event twice to one client, or one publisher's events to one topic out of
//    sequence. (Across topics, order is not promised: a sharded bus may carry topics apart.)
//  - Must arrive, per subscription: every event to its topic whose publish was sent after the
//    client had the subscribe ack, up to a cutoff: the last event each publisher had seen acked
//    when the client decided to leave. Before unsubscribing the client waits (with a deadline)
//    until the last such event has arrived, so the window is exact at both ends; events acked
//    later may or may not arrive before the unsubscribe takes effect. The ack's stream position
//    makes the same promise by offset (docs/delivery.md: whatever the stream places after it
//    reaches the connection live), checked separately.
//  - May arrive: events published before the ack (another node may still be carrying them when
//    the subscription takes effect), and events whose publish began before the unsubscribe ack
//    (in flight: the fan-out copied its recipients before the subscription ended).
//  - Must not arrive: an event whose publish began after the unsubscribe ack, taken by the client
//    before it next subscribed to that topic; and any event of a topic it never subscribed to.
#include "catch.hpp"
#include "demo_node.hpp"
#include "redis_cluster.hpp"
#include "redis_server.hpp"

#include <wsgate/beast/client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kNodes = 3;
constexpr int kTopics = 3;
constexpr int kPublishers = 2;              // publisher p is on node p; node 2 only hears the bus
constexpr int kChurnersPerNode = 3;
constexpr int kEventsPerPublisher = 1500;   // while the churn runs
constexpr int kTailEvents = 20;             // after every churner has left every topic
constexpr auto kPublishEvery = 4ms;         // about 250 events/s per publisher: six seconds of churn
constexpr Clock::duration kDeadline = 30s;  // for any one answer or arrival; generous on a loaded machine

std::string topic_name(int t) { return "events:churn-" + std::to_string(t); }

int topic_index(const std::string& name) {
    for (int t = 0; t < kTopics; ++t)
        if (name == topic_name(t)) return t;
    return -1;
}

long long ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

/// One publish as its publisher saw it; its sequence number is its index in the publisher's log.
struct Publication {
    int topic = -1;
    Clock::time_point sent;    ///< read before the publish frame was queued
    std::uint64_t offset = 0;  ///< its position in the topic's stream, from the publish ack
};

/// What one publisher has published so far. Thread-safe.
class PublisherLog {
public:
    /// Records a publish about to be sent; its sequence number.
    int begin(int topic) {
        std::lock_guard lock(mu_);
        pubs_.push_back({topic, Clock::now(), 0});
        return static_cast<int>(pubs_.size()) - 1;
    }
    void acked(int seq, std::uint64_t offset) {
        std::lock_guard lock(mu_);
        pubs_[seq].offset = offset;
        acked_ = seq + 1;
    }
    /// For a subscription to `topic` acked at `ack_seen` with stream position `ack_offset`: sets
    /// `cutoff` to the last sequence number acked so far, and returns the last of those the
    /// subscription must receive (published to `topic` after the ack, or positioned after it),
    /// or -1. A publisher's publishes to one topic are sequential, so both their send times and
    /// their offsets grow with the sequence number: the last match is the first one found going
    /// back, and the first publication of the topic that does not match ends the search.
    int must_reach_up_to(int topic, Clock::time_point ack_seen, std::uint64_t ack_offset, int& cutoff) const {
        std::lock_guard lock(mu_);
        cutoff = acked_ - 1;
        for (int k = cutoff; k >= 0; --k) {
            const auto& pub = pubs_[k];
            if (pub.topic != topic) continue;
            return pub.sent > ack_seen || pub.offset > ack_offset ? k : -1;
        }
        return -1;
    }
    [[nodiscard]] std::vector<Publication> all() const {
        std::lock_guard lock(mu_);
        return pubs_;
    }
    [[nodiscard]] int acked_count() const {
        std::lock_guard lock(mu_);
        return acked_;
    }

private:
    mutable std::mutex mu_;
    std::vector<Publication> pubs_;
    int acked_ = 0;
};

using Logs = std::array<PublisherLog, kPublishers>;

/// Publishes `count` events, one at a time (each after the previous one's ack), to topics drawn
/// from `rng`; the first failure is written to `problem`.
void publish_events(wsgate::beast::Client& ws, int p, PublisherLog& log, int count, std::mt19937& rng,
                    std::string& problem) {
    auto next = Clock::now();
    for (int i = 0; i < count; ++i) {
        std::this_thread::sleep_until(next);  // pacing only: the order comes from the acks
        const int topic = static_cast<int>(rng() % kTopics);
        const int seq = log.begin(topic);
        const json msg{{"type", "publish"}, {"topic", topic_name(topic)}, {"event", "tick"},
                       {"data", {{"p", p}, {"seq", seq}}}, {"ref", seq}};
        if (auto ec = ws.send(msg.dump())) {
            problem = "publisher " + std::to_string(p) + ": send failed: " + ec.message();
            return;
        }
        std::optional<json> ack;
        for (const auto until = Clock::now() + kDeadline; !ack && Clock::now() < until && ws.is_open();) {
            auto m = ws.receive(100ms);
            if (!m) continue;
            auto j = json::parse(*m, nullptr, false);
            if (j.is_object() && j.value("ref", -1) == seq) ack = std::move(j);
        }
        if (!ack || ack->value("type", "") != "ack" || !(*ack)["offset"].is_number_unsigned()) {
            problem = "publisher " + std::to_string(p) + ": publish #" + std::to_string(seq) + " answered " +
                      (ack ? ack->dump() : std::string{"nothing"});
            return;
        }
        log.acked(seq, (*ack)["offset"].get<std::uint64_t>());
        next = std::max(next + kPublishEvery, Clock::now());
    }
}

/// One subscription of one client to one topic, from the subscribe to its unsubscribe ack.
struct Interval {
    int topic = -1;
    Clock::time_point subscribe_sent;  ///< read before the subscribe frame was queued
    Clock::time_point ack_seen;        ///< read after the ack was received
    std::uint64_t ack_offset = std::numeric_limits<std::uint64_t>::max();  ///< the ack's stream position
    /// Per publisher, the last sequence number acked before the client began to leave: the
    /// subscription answers for the events up to there. -1 until it has left.
    std::array<int, kPublishers> cutoff = [] {
        std::array<int, kPublishers> none{};
        none.fill(-1);
        return none;
    }();
    std::optional<Clock::time_point> unsubscribe_sent;
    std::optional<Clock::time_point> unsubscribe_acked;  ///< read after the ack was received
};

/// One event as a client received it.
struct Delivery {
    Clock::time_point seen;  ///< read after the frame was taken from the client's queue
    int topic = -1;
    int publisher = -1;
    int seq = -1;
    std::uint64_t offset = 0;
};

/// A WebSocket client on one node that records every subscription and every event it receives.
/// Used by one thread at a time.
class Subscriber {
public:
    Subscriber(std::string name, int node) : name_(std::move(name)), node_(node) {
        open_.fill(-1);
        for (auto& row : last_seen_) row.fill(-1);
    }

    std::error_code connect(const wsgate::test::DemoNode& n) {
        return ws_.connect(n.url() + "?token=" + wsgate::test::demo_user_token(name_));
    }

    [[nodiscard]] bool subscribed(int t) const { return open_[t] >= 0; }

    /// Subscribes to topic `t` and waits for the ack.
    bool subscribe(int t) {
        Interval iv;
        iv.topic = t;
        const int ref = next_ref_++;
        iv.subscribe_sent = Clock::now();
        if (auto ec = ws_.send(json{{"type", "subscribe"}, {"topic", topic_name(t)}, {"ref", ref}}.dump()))
            return fail("subscribe " + topic_name(t) + ": send failed: " + ec.message());
        auto reply = await_reply(ref);
        iv.ack_seen = Clock::now();
        if (!reply || reply->value("type", "") != "ack")
            return fail("subscribe " + topic_name(t) + " answered " + (reply ? reply->dump() : std::string{"nothing"}));
        if (auto pos = reply->find("position"); pos != reply->end() && (*pos)["offset"].is_number_unsigned())
            iv.ack_offset = (*pos)["offset"].get<std::uint64_t>();
        else
            fail("subscribe ack without a stream position: " + reply->dump());
        open_[t] = static_cast<int>(intervals_.size());
        intervals_.push_back(iv);
        return true;
    }

    /// Leaves topic `t`: first waits until every event the subscription must receive, among those
    /// acked by now, has arrived (or the deadline passed: the check after the run names the gap),
    /// then unsubscribes and waits for the ack.
    bool leave(int t, const Logs& logs) {
        auto& iv = intervals_[open_[t]];
        std::array<int, kPublishers> target{};
        for (int p = 0; p < kPublishers; ++p)
            target[p] = logs[p].must_reach_up_to(t, iv.ack_seen, iv.ack_offset, iv.cutoff[p]);
        // After one event failed to come, the others wait less: the run still ends in time.
        const auto until = Clock::now() + (lost_ ? Clock::duration{500ms} : kDeadline);
        for (int p = 0; p < kPublishers; ++p)
            while (last_seen_[p][t] < target[p]) {
                if (Clock::now() >= until || !ws_.is_open()) {
                    lost_ = true;
                    break;
                }
                pump(100ms);
            }
        const int ref = next_ref_++;
        iv.unsubscribe_sent = Clock::now();
        if (auto ec = ws_.send(json{{"type", "unsubscribe"}, {"topic", topic_name(t)}, {"ref", ref}}.dump()))
            return fail("unsubscribe " + topic_name(t) + ": send failed: " + ec.message());
        auto reply = await_reply(ref);
        if (!reply || reply->value("type", "") != "ack")
            return fail("unsubscribe " + topic_name(t) + " answered " +
                        (reply ? reply->dump() : std::string{"nothing"}));
        iv.unsubscribe_acked = Clock::now();
        open_[t] = -1;
        return true;
    }

    /// Leaves every topic it is still subscribed to.
    bool leave_all(const Logs& logs) {
        for (int t = 0; t < kTopics; ++t)
            if (subscribed(t) && !leave(t, logs)) return false;
        return true;
    }

    /// Receives (and records) whatever comes for `d`.
    void idle(Clock::duration d) {
        for (const auto until = Clock::now() + d; Clock::now() < until && ws_.is_open();)
            pump(std::min<Clock::duration>(until - Clock::now(), 50ms));
    }

    /// Receives until nothing has come for `quiet`, or `kDeadline` passed.
    void drain(Clock::duration quiet) {
        for (const auto until = Clock::now() + kDeadline; Clock::now() < until && ws_.is_open();)
            if (!pump(quiet, true)) return;
    }

    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] int node() const { return node_; }
    [[nodiscard]] const std::vector<Interval>& intervals() const { return intervals_; }
    [[nodiscard]] const std::vector<Delivery>& deliveries() const { return deliveries_; }
    [[nodiscard]] const std::vector<std::string>& problems() const { return problems_; }

private:
    bool fail(std::string what) {
        problems_.push_back(name_ + ": " + std::move(what));
        return false;
    }

    /// Takes one frame (waiting up to `wait`) and records it if it is an event. Returns the frame
    /// if it is a reply (ack, error); with `any`, an empty object for an event or a presence
    /// frame too, so that nullopt means nothing came.
    std::optional<json> pump(Clock::duration wait, bool any = false) {
        auto m = ws_.receive(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
        if (!m) {
            if (!ws_.is_open() && !closed_) {
                closed_ = true;
                fail("the connection closed (code " + std::to_string(ws_.close_code().value_or(1006)) + ")");
            }
            return std::nullopt;
        }
        const auto seen = Clock::now();
        auto j = json::parse(*m, nullptr, false);
        if (!j.is_object()) {
            fail("not a JSON object: " + *m);
            return std::nullopt;
        }
        const auto type = j.value("type", "");
        if (type == "tick") {
            Delivery d;
            d.seen = seen;
            d.topic = topic_index(j.value("topic", ""));
            const auto& data = j["data"];
            d.publisher = data.is_object() ? data.value("p", -1) : -1;
            d.seq = data.is_object() ? data.value("seq", -1) : -1;
            d.offset = j.value("offset", std::uint64_t{0});
            deliveries_.push_back(d);
            if (d.topic >= 0 && d.publisher >= 0 && d.publisher < kPublishers) {
                auto& last = last_seen_[d.publisher][d.topic];
                last = std::max(last, d.seq);
            }
            if (any) return json::object();
            return std::nullopt;
        }
        if (type == "join" || type == "leave") return any ? std::optional<json>{json::object()} : std::nullopt;
        return j;
    }

    std::optional<json> await_reply(int ref) {
        for (const auto until = Clock::now() + kDeadline; Clock::now() < until && ws_.is_open();) {
            auto j = pump(100ms);
            if (!j) continue;
            if (j->value("ref", -1) == ref) return j;
            fail("unexpected frame: " + j->dump());
        }
        return std::nullopt;
    }

    std::string name_;
    int node_;
    wsgate::beast::Client ws_;
    std::vector<Interval> intervals_;
    std::vector<Delivery> deliveries_;
    std::vector<std::string> problems_;
    std::array<int, kTopics> open_{};  ///< index in intervals_ of the open subscription per topic, or -1
    /// Per publisher and topic, the highest sequence number received so far.
    std::array<std::array<int, kTopics>, kPublishers> last_seen_{};
    int next_ref_ = 1;
    bool lost_ = false;
    bool closed_ = false;
};

/// What the check of every client's record found.
struct Verdict {
    long long must = 0;           ///< (subscription, event) pairs that had to arrive: published after the ack
    long long missing = 0;        ///< ...of which the event never arrived
    long long must_position = 0;  ///< pairs positioned after the ack's stream position
    long long missing_position = 0;
    long long must_cross_node = 0;  ///< `must` pairs whose publisher is on another node
    long long must_churn = 0;       ///< `must` pairs of churning clients
    long long duplicates = 0;
    long long reordered = 0;         ///< a publisher's events to one topic out of sequence
    long long forbidden = 0;         ///< published after the unsubscribe ack (or never subscribed) and received
    long long mismatched = 0;        ///< an event that names no publication, or a wrong topic or offset
    long long gap_publications = 0;  ///< events published to a topic while a churning client was out of it
    long long intervals = 0;
    /// `must` and `missing` by the publisher's node (row) and the receiving client's node (column).
    std::array<std::array<long long, kNodes>, kNodes> must_by_nodes{}, missing_by_nodes{};
    std::vector<std::string> examples;

    void note(std::string what) {
        if (examples.size() < 20) examples.push_back(std::move(what));
    }
};

std::string event_name(int p, int seq, const Publication& pub) {
    return "p" + std::to_string(p) + "#" + std::to_string(seq) + " (" + topic_name(pub.topic) + ", offset " +
           std::to_string(pub.offset) + ")";
}

void check_client(const Subscriber& s, bool churning, const std::array<std::vector<Publication>, kPublishers>& pubs,
                  Verdict& v) {
    std::set<std::pair<int, int>> received;
    std::array<std::array<int, kTopics>, kPublishers> last{};
    for (auto& row : last) row.fill(-1);
    const auto& ivs = s.intervals();
    for (const auto& d : s.deliveries()) {
        if (d.publisher < 0 || d.publisher >= kPublishers || d.seq < 0 ||
            d.seq >= static_cast<int>(pubs[d.publisher].size())) {
            ++v.mismatched;
            v.note(s.name() + ": an event no publisher sent (p" + std::to_string(d.publisher) + "#" +
                   std::to_string(d.seq) + ")");
            continue;
        }
        const auto& pub = pubs[d.publisher][d.seq];
        if (d.topic != pub.topic || d.offset != pub.offset) {
            ++v.mismatched;
            v.note(s.name() + ": " + event_name(d.publisher, d.seq, pub) + " arrived as topic " +
                   std::to_string(d.topic) + ", offset " + std::to_string(d.offset));
            continue;
        }
        if (!received.emplace(d.publisher, d.seq).second) {
            ++v.duplicates;
            v.note(s.name() + ": " + event_name(d.publisher, d.seq, pub) + " arrived twice");
        }
        auto& prev = last[d.publisher][d.topic];
        if (d.seq < prev) {
            ++v.reordered;
            v.note(s.name() + ": " + event_name(d.publisher, d.seq, pub) + " arrived after #" + std::to_string(prev));
        }
        prev = std::max(prev, d.seq);
        // The subscription the client was in (or had last left) when it took the event: the last
        // one to this topic it had asked for by then.
        const Interval* in = nullptr;
        for (const auto& iv : ivs)
            if (iv.topic == d.topic && iv.subscribe_sent <= d.seen) in = &iv;
        if (in == nullptr) {
            ++v.forbidden;
            v.note(s.name() + ": " + event_name(d.publisher, d.seq, pub) + " arrived before it ever subscribed");
        } else if (in->unsubscribe_acked && pub.sent > *in->unsubscribe_acked) {
            ++v.forbidden;
            v.note(s.name() + ": " + event_name(d.publisher, d.seq, pub) + " was published " +
                   std::to_string(ms_between(*in->unsubscribe_acked, pub.sent)) +
                   " ms after its unsubscribe ack and arrived " +
                   std::to_string(ms_between(*in->unsubscribe_acked, d.seen)) + " ms after it");
        }
    }
    // Must-arrive: per subscription, the events up to its cutoff published to its topic after its
    // ack (the publish frame was sent after the client had the ack), and, as the ack's position
    // promises, those the stream placed after that position.
    for (const auto& iv : ivs) {
        ++v.intervals;
        for (int p = 0; p < kPublishers; ++p) {
            const auto& log = pubs[p];
            for (int k = 0; k <= iv.cutoff[p]; ++k) {
                const auto& pub = log[k];
                if (pub.topic != iv.topic) continue;
                const bool got = received.count({p, k}) > 0;
                if (pub.sent > iv.ack_seen) {
                    ++v.must;
                    ++v.must_by_nodes[p][s.node()];
                    if (p != s.node()) ++v.must_cross_node;
                    if (churning) ++v.must_churn;
                    if (!got) {
                        ++v.missing;
                        ++v.missing_by_nodes[p][s.node()];
                        v.note(s.name() + " (node " + std::to_string(s.node()) + "): " + event_name(p, k, pub) +
                               ", published " + std::to_string(ms_between(iv.ack_seen, pub.sent)) +
                               " ms after the subscribe ack, never arrived");
                    }
                }
                if (pub.offset > iv.ack_offset) {
                    ++v.must_position;
                    if (!got) {
                        ++v.missing_position;
                        v.note(s.name() + " (node " + std::to_string(s.node()) + "): " + event_name(p, k, pub) +
                               ", after the ack's position " + std::to_string(iv.ack_offset) + ", never arrived");
                    }
                }
            }
        }
    }
    // The power of the forbidden check: publications made while a churning client was out of the topic.
    if (!churning) return;
    for (std::size_t i = 0; i < ivs.size(); ++i) {
        if (!ivs[i].unsubscribe_acked) continue;
        std::optional<Clock::time_point> back;
        for (std::size_t j = i + 1; j < ivs.size() && !back; ++j)
            if (ivs[j].topic == ivs[i].topic) back = ivs[j].subscribe_sent;
        for (const auto& log : pubs)
            for (const auto& pub : log)
                if (pub.topic == ivs[i].topic && pub.sent > *ivs[i].unsubscribe_acked && (!back || pub.sent < *back))
                    ++v.gap_publications;
    }
}


// The whole run against the Redis that `spec` (store and bus) names.
void churn_over(const std::string& spec) {
    // Rate limits and send queues out of the way: this test is about who hears what, not about
    // limits or slow consumers.
    std::vector<std::unique_ptr<wsgate::test::DemoNode>> nodes;
    for (int n = 0; n < kNodes; ++n) {
        nodes.push_back(std::make_unique<wsgate::test::DemoNode>(std::vector<std::string>{
            "--store", spec, "--bus", spec, "--node-id", "node-" + std::to_string(n), "--rate=100000",
            "--burst=100000", "--queue=65536"}));
        REQUIRE(nodes.back()->port != 0);
    }

    std::array<std::unique_ptr<wsgate::beast::Client>, kPublishers> publishers;
    for (int p = 0; p < kPublishers; ++p) {
        publishers[p] = std::make_unique<wsgate::beast::Client>();
        REQUIRE_FALSE(publishers[p]->connect(
            nodes[p]->url() + "?token=" + wsgate::test::demo_user_token("publisher-" + std::to_string(p))));
    }
    // Churning clients, and on every node one witness subscribed to every topic from before the
    // first publish to after the last: a witness must receive every event.
    std::vector<std::unique_ptr<Subscriber>> churners, witnesses;
    for (int n = 0; n < kNodes; ++n) {
        for (int i = 0; i < kChurnersPerNode; ++i) {
            const auto name = "churner-" + std::to_string(n) + "-" + std::to_string(i);
            churners.push_back(std::make_unique<Subscriber>(name, n));
            REQUIRE_FALSE(churners.back()->connect(*nodes[n]));
        }
        witnesses.push_back(std::make_unique<Subscriber>("witness-" + std::to_string(n), n));
        REQUIRE_FALSE(witnesses.back()->connect(*nodes[n]));
        for (int t = 0; t < kTopics; ++t) REQUIRE(witnesses.back()->subscribe(t));
    }

    Logs logs;
    std::array<std::string, kPublishers> publisher_problem;
    std::array<std::mt19937, kPublishers> publisher_rng{std::mt19937{11}, std::mt19937{23}};
    const auto run_publishers = [&](int count) {
        std::vector<std::thread> threads;
        for (int p = 0; p < kPublishers; ++p)
            threads.emplace_back([&, p, count] {
                if (publisher_problem[p].empty())
                    publish_events(*publishers[p], p, logs[p], count, publisher_rng[p], publisher_problem[p]);
            });
        for (auto& t : threads) t.join();
    };

    // The churn: each client flips a random topic (subscribe, or leave), then listens for a random
    // 10-150 ms, until the publishers are done; then it leaves whatever it is still in.
    std::atomic<bool> publishing{true};
    std::vector<std::thread> listeners;
    for (std::size_t c = 0; c < churners.size(); ++c)
        listeners.emplace_back([&, c] {
            auto& s = *churners[c];
            std::mt19937 rng(static_cast<unsigned>(1000 + c));
            while (publishing.load()) {
                const int t = static_cast<int>(rng() % kTopics);
                if (!(s.subscribed(t) ? s.leave(t, logs) : s.subscribe(t))) break;
                s.idle(std::chrono::milliseconds(10 + rng() % 141));
            }
            s.leave_all(logs);
        });
    for (auto& w : witnesses)
        listeners.emplace_back([&, s = w.get()] {
            while (publishing.load()) s->idle(100ms);
        });
    run_publishers(kEventsPerPublisher);
    publishing = false;
    for (auto& t : listeners) t.join();

    // Every churning client is out of every topic now: the tail reaches the witnesses only. Once a
    // witness has all of it, its node has handled all of it, and the churners there are drained.
    run_publishers(kTailEvents);
    for (auto& w : witnesses) w->leave_all(logs);
    for (auto& c : churners) c->drain(300ms);

    std::string node_logs;  // as they are after the run
    for (int n = 0; n < kNodes; ++n) node_logs += "node-" + std::to_string(n) + ":\n" + nodes[n]->log();
    INFO(node_logs);
    for (int p = 0; p < kPublishers; ++p) {
        INFO("publisher " << p);
        CHECK(publisher_problem[p] == "");
        CHECK(logs[p].acked_count() == kEventsPerPublisher + kTailEvents);
    }
    std::vector<std::string> problems;
    for (const auto* group : {&churners, &witnesses})
        for (const auto& s : *group) problems.insert(problems.end(), s->problems().begin(), s->problems().end());
    CHECK(problems == std::vector<std::string>{});

    std::array<std::vector<Publication>, kPublishers> pubs;
    for (int p = 0; p < kPublishers; ++p) pubs[p] = logs[p].all();
    Verdict v;
    for (const auto& s : churners) check_client(*s, true, pubs, v);
    for (const auto& s : witnesses) check_client(*s, false, pubs, v);
    std::ostringstream summary;
    summary << v.intervals << " subscriptions; " << v.must << " events had to arrive (" << v.must_churn
            << " at churning clients, " << v.must_cross_node << " across nodes), " << v.must_position
            << " by stream position; " << v.gap_publications << " published while a churning client was out\n"
            << "missing/had to arrive, from the publisher's node to the client's:";
    for (int from = 0; from < kPublishers; ++from)
        for (int to = 0; to < kNodes; ++to)
            summary << " node-" << from << "->node-" << to << " " << v.missing_by_nodes[from][to] << "/"
                    << v.must_by_nodes[from][to];
    INFO(summary.str());
    std::string examples;
    for (const auto& e : v.examples) examples += e + "\n";
    INFO(examples);
    CHECK(v.missing == 0);
    CHECK(v.missing_position == 0);
    CHECK(v.duplicates == 0);
    CHECK(v.reordered == 0);
    CHECK(v.forbidden == 0);
    CHECK(v.mismatched == 0);
    // The run had the coverage it needs to mean something: churn, deliveries across nodes, and
    // publications the unsubscribed clients must not hear (the tail alone gives some).
    CHECK(v.intervals >= static_cast<long long>(churners.size()) * 4);
    CHECK(v.must_churn >= 500);
    CHECK(v.must_cross_node >= 2LL * (kEventsPerPublisher + kTailEvents));
    CHECK(v.gap_publications >= kTailEvents);
}

}  // namespace

TEST_CASE("three demo nodes over one redis-server: under subscribe/unsubscribe churn every subscription hears "
          "each event published after its ack once and in order, and nothing published after it left",
          "[e2e][redis][cluster][churn]") {
    wsgate::test::RedisServer redis;
    churn_over("redis://127.0.0.1:" + std::to_string(redis.port()));
}

TEST_CASE("three demo nodes over a three-master Redis Cluster: the same under churn, with the topic channels "
          "spread over the shards",
          "[e2e][redis][cluster][churn][redis-cluster]") {
    wsgate::test::RedisCluster redis{3};
    churn_over("redis://127.0.0.1:" + std::to_string(redis.port()) + "?cluster=1");
    // The bus really went to more than one shard: the three topics' channels hash to different
    // masters (checked here so a change of channel names cannot quietly put them on one).
    std::set<int> masters;
    for (int t = 0; t < kTopics; ++t) masters.insert(redis.master_of(redis.slot_of("wsgate:bus:t:" + topic_name(t))));
    CHECK(masters.size() >= 2);
}
