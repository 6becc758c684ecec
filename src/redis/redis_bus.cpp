#include <wsgate/redis/redis_bus.hpp>

#include "redis_cluster.hpp"
#include "redis_conn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsgate {
namespace {

using detail::RedisConn;
using detail::Reply;
using detail::str_of;

Duration backoff(const RedisBusSettings& s, unsigned attempt) {
    const auto cap = std::max<std::int64_t>(1, s.reconnect_max.count());
    std::int64_t d = std::max<std::int64_t>(1, s.reconnect_initial.count());
    for (unsigned i = 0; i < attempt && d < cap; ++i) d *= 2;
    return Duration{std::min(d, cap)};
}

/// A self-pipe in the subscriber's poll set: listen() and unlisten() wake the thread with it.
class WakePipe {
public:
    WakePipe() {
        if (::pipe(fds_) != 0) throw std::runtime_error("RedisBus: cannot create a pipe");
        for (const int fd : fds_) {
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
            ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    WakePipe(const WakePipe&) = delete;
    WakePipe& operator=(const WakePipe&) = delete;
    ~WakePipe() {
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    [[nodiscard]] int fd() const noexcept { return fds_[0]; }
    void wake() noexcept {
        const char b = 1;
        // A full pipe already holds a wake-up the thread has not read.
        [[maybe_unused]] const auto n = ::write(fds_[1], &b, 1);
    }
    void drain() noexcept {
        char buf[64];
        while (::read(fds_[0], buf, sizeof buf) > 0) {
        }
    }

private:
    int fds_[2] = {-1, -1};
};

/// What a reply on the subscriber connection is.
enum class Push { other, error, message, subscribe, ssubscribe, sunsubscribe };

Push classify(const redisReply* r) {
    if (r->type == REDIS_REPLY_ERROR) return Push::error;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return Push::other;  // a pong, an unsubscribe
    const auto kind = str_of(r->element[0]);
    if (kind == "message" || kind == "smessage") return Push::message;
    if (kind == "subscribe") return Push::subscribe;
    if (kind == "ssubscribe") return Push::ssubscribe;
    if (kind == "sunsubscribe") return Push::sunsubscribe;
    return Push::other;
}

bool flush(redisContext* c) {
    int done = 0;
    do {
        if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    } while (done == 0);
    return true;
}

/// One connection of the subscriber or the publisher, with the subscriber's health-check state.
struct Link {
    explicit Link(RedisEndpoint ep) : conn(std::move(ep)) {}
    RedisConn conn;
    std::chrono::steady_clock::time_point last_rx{};
    bool ping_outstanding = false;
    std::chrono::steady_clock::time_point ping_sent{};
    bool unflushed = false;
};

/**
 * The connections a bus needs: one to the endpoint, or with Redis Cluster one per master that
 * serves a channel in use, found from the slot map (CLUSTER SLOTS) read when the first link opens.
 */
class NodeLinks {
public:
    NodeLinks(const RedisEndpoint& ep, std::shared_ptr<detail::ClusterSeeds> seeds) : ep_(ep), seeds_(std::move(seeds)) {}

    /// The connected link for `channel` (opened if needed); throws StoreError(unavailable).
    Link& for_channel(std::string_view channel) {
        if (!ep_.cluster) return link_to(ep_.host, ep_.port);
        if (map_.empty()) load_map();
        const auto* owner = map_.owner(detail::key_slot(channel));
        if (owner == nullptr)
            throw StoreError(store_errc::unavailable, "redis cluster via " + ep_.host + ":" + std::to_string(ep_.port) +
                                                          ": no master serves the slot of " + std::string(channel));
        return link_to(owner->host, owner->port);
    }

    [[nodiscard]] std::vector<std::unique_ptr<Link>>& all() noexcept { return links_; }
    [[nodiscard]] bool connected() const noexcept {
        return std::any_of(links_.begin(), links_.end(), [](const auto& l) { return l->conn.connected(); });
    }
    /// Writes out every link's queued commands; false if a write failed.
    bool flush_all() {
        for (auto& l : links_) {
            if (!l->unflushed) continue;
            l->unflushed = false;
            if (l->conn.raw() == nullptr || !flush(l->conn.raw())) return false;
        }
        return true;
    }
    /// Drops every connection, and the slot map (a MOVED reply, a lost node); the masters it named
    /// are asked for the next map if the endpoint does not answer.
    void reset() noexcept {
        links_.clear();
        map_ = {};
    }

private:
    Link& link_to(const std::string& host, int port) {
        for (auto& l : links_) {
            const auto& e = l->conn.endpoint();
            if (e.host == host && e.port == port) {
                l->conn.ensure();
                return *l;
            }
        }
        RedisEndpoint node = ep_;
        node.host = host;
        node.port = port;
        node.cluster = false;
        auto l = std::make_unique<Link>(std::move(node));
        l->conn.ensure();
        l->last_rx = std::chrono::steady_clock::now();
        links_.push_back(std::move(l));
        return *links_.back();
    }

    void load_map() {
        std::string last_error;
        for (const auto& [host, port] : seeds_->candidates(ep_)) {
            RedisEndpoint seed_ep = ep_;
            seed_ep.host = host;
            seed_ep.port = port;
            seed_ep.cluster = false;
            RedisConn seed(std::move(seed_ep));
            try {
                map_ = detail::SlotMap::load(seed);
                seeds_->remember(map_);
                return;
            } catch (const StoreError& e) {
                last_error = e.what();
            }
        }
        throw StoreError(store_errc::unavailable, "redis cluster via " + ep_.host + ":" + std::to_string(ep_.port) +
                                                      ": no slot map: " + last_error);
    }

    RedisEndpoint ep_;
    std::shared_ptr<detail::ClusterSeeds> seeds_;
    detail::SlotMap map_;
    std::vector<std::unique_ptr<Link>> links_;
};

bool is_moved(const redisReply* r) {
    detail::Redirect to;
    return detail::parse_redirect(detail::error_of(r), to);
}

}  // namespace

struct RedisBus::Impl {
    /// One per-route channel as this node's subscriber sees it (guarded by interest_mu). Entries
    /// with no listener and nothing at the server are erased.
    struct Interest {
        std::size_t count = 0;        ///< listen() calls not yet balanced by unlisten()
        bool subscribe_sent = false;  ///< the last command sent for it this session was SSUBSCRIBE
        std::size_t pending = 0;      ///< SSUBSCRIBE/SUNSUBSCRIBE sent this session, not yet confirmed
        /// subscribe_sent and pending == 0: Redis confirmed an SSUBSCRIBE that no SUNSUBSCRIBE
        /// followed. Replies come in command order, so the last confirmation is the state.
        bool confirmed = false;
        bool queued = false;  ///< in `dirty`
    };
    struct Command {
        bool subscribe;
        std::string channel;
    };

    RedisBusSettings settings;
    bool routed;

    /// Redis Cluster: the masters the last slot map named, to ask when the endpoint is down.
    std::shared_ptr<detail::ClusterSeeds> seeds = std::make_shared<detail::ClusterSeeds>();
    std::mutex pub_mu;  // guards pub, pub_failures_in_row, next_pub_attempt
    NodeLinks pub;
    unsigned pub_failures_in_row = 0;
    std::chrono::steady_clock::time_point next_pub_attempt{};

    std::mutex handler_mu;  // held while the handler runs
    std::shared_ptr<const Handler> handler;

    std::mutex state_mu;  // with state_cv: stop and subscribed transitions
    std::condition_variable state_cv;
    bool stop = false;
    std::atomic<bool> is_subscribed{false};

    // Interest in routes. Never held while the handler runs or while the thread does I/O.
    std::mutex interest_mu;
    std::condition_variable interest_cv;  // a confirmation arrived
    std::unordered_map<std::string, Interest> interests;  // by channel
    std::vector<std::string> dirty;  // channels whose count no longer matches what was sent
    bool common_confirmed = false;
    /// The last connection attempt or session failed and no new session has started: a listen()
    /// then fails at once instead of waiting, so a Redis outage costs callers no timeout per
    /// connect or subscribe (the interest is kept and subscribed when Redis is back).
    bool known_down = false;
    std::size_t confirmed_channels = 0;  // entries with `confirmed`
    std::size_t listened_routes = 0;     // entries with count > 0
    WakePipe wake;

    std::atomic<std::uint64_t> published{0}, publish_failures{0}, received{0}, malformed{0}, reconnects{0},
        route_messages{0}, listen_failures{0}, route_subscribes{0}, route_unsubscribes{0}, subscribe_errors{0};
    std::thread thread;

    explicit Impl(RedisBusSettings s)
        : settings(std::move(s)), routed(settings.per_topic_channels), pub(settings.endpoint, seeds) {
        if (settings.channel.empty()) throw std::invalid_argument("RedisBus: empty channel name");
        if (settings.endpoint.cluster && settings.endpoint.database != 0)
            throw std::invalid_argument("RedisBus: a Redis Cluster has database 0 only");
        thread = std::thread([this] { run(); });
    }

    ~Impl() {
        {
            std::lock_guard lk(state_mu);
            stop = true;
        }
        state_cv.notify_all();
        wake.wake();
        thread.join();
    }

    bool stopping() {
        std::lock_guard lk(state_mu);
        return stop;
    }

    void set_subscribed(bool v) {
        {
            std::lock_guard lk(state_mu);
            is_subscribed = v;
        }
        state_cv.notify_all();
    }

    std::string channel_of(const BusRoute& r) const {
        if (!routed) return settings.channel;
        switch (r.kind) {
            case BusRoute::Kind::everyone: break;
            case BusRoute::Kind::topic: return settings.channel + ":t:" + r.name;
            case BusRoute::Kind::user: return settings.channel + ":u:" + r.name;
        }
        return settings.channel;
    }

    // ---- interest bookkeeping (callers hold interest_mu) ----------------------------------

    void set_confirmed(Interest& i, bool v) {
        if (i.confirmed == v) return;
        i.confirmed = v;
        if (v) ++confirmed_channels;
        else --confirmed_channels;
    }

    /// Queues `ch` for the subscriber thread when what was sent differs from what is wanted;
    /// true if the thread must be woken.
    bool queue_if_needed(const std::string& ch, Interest& i) {
        if ((i.count > 0) == i.subscribe_sent || i.queued) return false;
        i.queued = true;
        dirty.push_back(ch);
        return true;
    }

    static bool unused(const Interest& i) { return i.count == 0 && !i.subscribe_sent && i.pending == 0 && !i.queued; }

    /// The command that brings `ch` in line with its count, if one is needed. A drop to zero that
    /// a listen() undid before this ran sends nothing: the subscription never lapsed.
    void sync(const std::string& ch, std::vector<Command>& out) {
        auto it = interests.find(ch);
        if (it == interests.end()) return;
        Interest& i = it->second;
        i.queued = false;
        const bool want = i.count > 0;
        if (want != i.subscribe_sent) {
            out.push_back({want, ch});
            i.subscribe_sent = want;
            ++i.pending;
            set_confirmed(i, false);
        }
        if (unused(i)) interests.erase(it);
    }

    /// A subscription confirmation (`ssubscribe` or `sunsubscribe`) for `ch`.
    void confirmation(bool subscribe, const std::string& ch) {
        bool resubscribe = false;
        {
            std::lock_guard lk(interest_mu);
            auto it = interests.find(ch);
            if (it == interests.end()) return;
            Interest& i = it->second;
            if (i.pending > 0) {
                --i.pending;
            } else if (!subscribe) {
                // Unasked: the server dropped the subscription (with Redis Cluster, when the slot
                // moves). Subscribe again if anyone listens.
                i.subscribe_sent = false;
                resubscribe = queue_if_needed(ch, i);
            }
            if (i.pending == 0) set_confirmed(i, i.subscribe_sent);
            if (unused(i)) interests.erase(it);
        }
        interest_cv.notify_all();
        if (resubscribe) wake.wake();
    }

    // ---- the subscriber thread --------------------------------------------------------------

    void dispatch(const redisReply* r) {
        // Pub/sub pushes: ["message" | "smessage", channel, payload].
        BusMessage m;
        if (!decode_bus_message(str_of(r->element[2]), m)) {
            malformed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        {
            // Called under handler_mu: once set_handler() returns, the old handler is not running
            // and never runs again (the Gateway clears it in its destructor).
            std::lock_guard lk(handler_mu);
            if (handler && *handler) {
                try {
                    (*handler)(m);
                } catch (...) {
                    // A failing handler never stops the bus.
                }
            }
        }
        received.fetch_add(1, std::memory_order_relaxed);  // after: "received" means "handled"
    }

    /// Queues `cmds`, each on the connection serving its channel, and writes them out; false if a
    /// write failed (throws StoreError if a needed connection cannot be opened).
    bool send(NodeLinks& sub, const std::vector<Command>& cmds) {
        if (cmds.empty()) return true;
        for (const auto& cmd : cmds) {
            Link& l = sub.for_channel(cmd.channel);
            l.conn.append({cmd.subscribe ? "SSUBSCRIBE" : "SUNSUBSCRIBE", cmd.channel});
            l.unflushed = true;
            (cmd.subscribe ? route_subscribes : route_unsubscribes).fetch_add(1, std::memory_order_relaxed);
        }
        return sub.flush_all();
    }

    /// Sends what the interest changes since the last call need.
    bool send_dirty(NodeLinks& sub) {
        std::vector<Command> cmds;
        {
            std::lock_guard lk(interest_mu);
            std::vector<std::string> channels;
            channels.swap(dirty);
            for (const auto& ch : channels) sync(ch, cmds);
        }
        return send(sub, cmds);
    }

    /// Forgets what the server held: the connection is gone, and with it every subscription.
    void end_session() {
        {
            std::lock_guard lk(interest_mu);
            known_down = true;
            common_confirmed = false;
            dirty.clear();
            for (auto it = interests.begin(); it != interests.end();) {
                Interest& i = it->second;
                i.subscribe_sent = false;
                i.pending = 0;
                i.queued = false;
                set_confirmed(i, false);
                if (unused(i)) it = interests.erase(it);
                else ++it;
            }
        }
        interest_cv.notify_all();
    }

    /// Handles one reply of the subscriber connections; false if the session must end.
    bool on_reply(const redisReply* msg, std::size_t& startup_left, Duration startup_wait,
                  std::chrono::steady_clock::time_point& startup_deadline) {
        const Push kind = classify(msg);
        switch (kind) {
            case Push::error:
                // A refused SUBSCRIBE or SSUBSCRIBE (a server before Redis 7, a cluster redirect
                // after a slot moved): a new session, with a new slot map, is the way forward.
                subscribe_errors.fetch_add(1, std::memory_order_relaxed);
                return false;
            case Push::message: dispatch(msg); break;
            case Push::subscribe: {
                {
                    std::lock_guard lk(interest_mu);
                    common_confirmed = true;
                }
                interest_cv.notify_all();
                break;
            }
            case Push::ssubscribe:
            case Push::sunsubscribe:
                confirmation(kind == Push::ssubscribe, std::string{str_of(msg->element[1])});
                break;
            case Push::other: break;
        }
        if (startup_left > 0 && (kind == Push::subscribe || kind == Push::ssubscribe)) {
            startup_deadline = std::chrono::steady_clock::now() + startup_wait;  // progress: a long list is not a stall
            if (--startup_left == 0) set_subscribed(true);
        }
        return true;
    }

    // One subscribed session: returns when a connection fails or the bus stops. Throws
    // StoreError if a connection a channel needs cannot be opened.
    void session(NodeLinks& sub) {
        using steady = std::chrono::steady_clock;
        // The common channel, then every route somebody listens to; subscribed() once Redis
        // confirmed all of them (confirmations come in command order, before any later one).
        std::vector<Command> routes;
        wake.drain();
        {
            std::lock_guard lk(interest_mu);
            known_down = false;
            dirty.clear();
            for (auto it = interests.begin(); it != interests.end();) {
                Interest& i = it->second;
                i.queued = false;
                if (unused(i)) {
                    it = interests.erase(it);
                    continue;
                }
                routes.push_back({true, it->first});
                i.subscribe_sent = true;
                i.pending = 1;
                ++it;
            }
        }
        Link& common = sub.for_channel(settings.channel);
        common.conn.append({"SUBSCRIBE", settings.channel});
        common.unflushed = true;
        if (!send(sub, routes) || !sub.flush_all()) return;
        std::size_t startup_left = 1 + routes.size();
        routes = {};
        const Duration startup_wait = std::max(settings.endpoint.command_timeout, Duration{100});
        auto startup_deadline = steady::now() + startup_wait;

        const auto health = settings.health_check_interval;
        for (auto& l : sub.all()) {
            l->last_rx = steady::now();
            l->ping_outstanding = false;
        }
        std::vector<pollfd> fds;
        while (!stopping()) {
            // Every reply already read, on every connection.
            bool any = false;
            for (auto& l : sub.all()) {
                for (;;) {
                    void* raw = nullptr;
                    if (redisGetReplyFromReader(l->conn.raw(), &raw) != REDIS_OK) return;
                    if (raw == nullptr) break;
                    Reply msg{static_cast<redisReply*>(raw)};
                    l->last_rx = steady::now();
                    l->ping_outstanding = false;  // any traffic proves the connection alive (the pong too)
                    if (!on_reply(msg.get(), startup_left, startup_wait, startup_deadline)) return;
                    any = true;
                    if (stopping()) return;
                }
            }
            if (any) continue;
            // The links may grow while the session runs (a channel on another master).
            const std::size_t n_links = sub.all().size();
            fds.assign(n_links + 1, pollfd{});
            for (std::size_t i = 0; i < n_links; ++i) {
                fds[i].fd = sub.all()[i]->conn.raw()->fd;
                fds[i].events = POLLIN;
            }
            fds[n_links].fd = wake.fd();
            fds[n_links].events = POLLIN;
            const int n = ::poll(fds.data(), static_cast<nfds_t>(fds.size()), 100);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return;
            const auto now = steady::now();
            if (startup_left > 0 && now > startup_deadline) return;
            for (std::size_t i = 0; i < n_links; ++i)
                if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
                    redisBufferRead(sub.all()[i]->conn.raw()) != REDIS_OK)
                    return;
            if ((fds[n_links].revents & POLLIN) != 0) {
                wake.drain();
                if (!send_dirty(sub)) return;
            }
            // A quiet connection may be half-open (server frozen, NAT dropped it): PING it, and
            // give up on it if the PING goes unanswered for another interval.
            if (health.count() <= 0) continue;
            for (auto& l : sub.all()) {
                if (l->ping_outstanding && now - l->ping_sent > health) return;
                if (!l->ping_outstanding && now - l->last_rx > health) {
                    if (redisAppendCommand(l->conn.raw(), "PING") != REDIS_OK || !flush(l->conn.raw())) return;
                    l->ping_sent = now;
                    l->ping_outstanding = true;
                }
            }
        }
    }

    void run() {
        unsigned attempt = 0;
        bool had_session = false;
        NodeLinks sub(settings.endpoint, seeds);
        while (!stopping()) {
            try {
                sub.for_channel(settings.channel);
                if (had_session) reconnects.fetch_add(1, std::memory_order_relaxed);
                had_session = true;
                attempt = 0;
                session(sub);
            } catch (const StoreError&) {
                // unreachable: back off below
            }
            set_subscribed(false);
            end_session();
            sub.reset();
            std::unique_lock lk(state_mu);
            state_cv.wait_for(lk, backoff(settings, attempt), [&] { return stop; });
            ++attempt;
        }
    }

    // ---- listen / unlisten -----------------------------------------------------------------

    Duration listen_wait() const { return std::max(settings.endpoint.command_timeout, Duration{1}); }

    bool listen(const BusRoute& r) {
        if (!routed) return true;
        std::unique_lock lk(interest_mu);
        if (r.kind == BusRoute::Kind::everyone) {
            if (!known_down && interest_cv.wait_for(lk, listen_wait(), [&] { return common_confirmed || known_down; }) &&
                common_confirmed)
                return true;
            listen_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        const std::string ch = channel_of(r);
        // A reference stays valid across rehashing, and the entry is not erased while counted.
        Interest& i = interests[ch];
        if (i.count++ == 0) ++listened_routes;
        if (i.confirmed) return true;
        if (queue_if_needed(ch, i)) wake.wake();
        if (!known_down && interest_cv.wait_for(lk, listen_wait(), [&] { return i.confirmed || known_down; }) &&
            i.confirmed)
            return true;
        listen_failures.fetch_add(1, std::memory_order_relaxed);
        return false;
    }

    void unlisten(const BusRoute& r) {
        if (!routed || r.kind == BusRoute::Kind::everyone) return;
        const std::string ch = channel_of(r);
        std::lock_guard lk(interest_mu);
        auto it = interests.find(ch);
        if (it == interests.end() || it->second.count == 0) return;
        Interest& i = it->second;
        if (--i.count > 0) return;
        --listened_routes;
        if (queue_if_needed(ch, i)) wake.wake();
        else if (unused(i)) interests.erase(it);
    }

    // ---- publish ---------------------------------------------------------------------------

    bool publish(const BusMessage& m) {
        struct Leg {
            bool sharded;
            std::string channel;
            std::string text;
        };
        std::vector<Leg> legs;
        try {
            if (routed) {
                for (const auto& leg : route_bus_message(m, settings.max_user_routes))
                    legs.push_back({leg.route.kind != BusRoute::Kind::everyone, channel_of(leg.route),
                                    encode_bus_message(leg.message)});
            } else {
                legs.push_back({false, settings.channel, encode_bus_message(m)});
            }
        } catch (const std::exception&) {  // e.g. text that is not UTF-8 in the audience
            publish_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        if (legs.empty()) {  // an audience of no user: nobody to reach
            published.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
        std::lock_guard lk(pub_mu);
        const auto now = std::chrono::steady_clock::now();
        if (!pub.connected() && now < next_pub_attempt) {
            publish_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        try {
            // A connection the server closed since the last publish is dropped, not failed on.
            for (auto& l : pub.all()) l->conn.drop_if_closed();
            // One pipelined round trip per connection; every reply is read, so each connection
            // stays in step. With Redis Cluster, a leg a MOVED reply refused (its slot moved) is
            // sent once more after the slot map is read again; the legs Redis accepted are not.
            std::vector<const Leg*> pending;
            for (const auto& leg : legs) pending.push_back(&leg);
            for (int round = 0; round < 2 && !pending.empty(); ++round) {
                std::vector<Link*> via;
                for (const Leg* leg : pending) {
                    Link& l = pub.for_channel(leg->sharded ? leg->channel : settings.channel);
                    l.conn.append({leg->sharded ? "SPUBLISH" : "PUBLISH", leg->channel, leg->text});
                    via.push_back(&l);
                }
                std::vector<const Leg*> moved;
                bool refused = false;
                for (std::size_t i = 0; i < pending.size(); ++i) {
                    auto r = via[i]->conn.next();
                    if (r->type == REDIS_REPLY_INTEGER) continue;
                    if (settings.endpoint.cluster && is_moved(r.get())) moved.push_back(pending[i]);
                    else refused = true;
                }
                if (refused) throw StoreError(store_errc::unavailable, "PUBLISH refused");
                if (!moved.empty()) pub.reset();
                pending = std::move(moved);
            }
            if (!pending.empty()) throw StoreError(store_errc::unavailable, "PUBLISH redirected twice");
            pub_failures_in_row = 0;
            published.fetch_add(1, std::memory_order_relaxed);
            route_messages.fetch_add(
                static_cast<std::uint64_t>(std::count_if(legs.begin(), legs.end(), [](const Leg& l) { return l.sharded; })),
                std::memory_order_relaxed);
            return true;
        } catch (const StoreError&) {
            pub.reset();
            next_pub_attempt = now + backoff(settings, pub_failures_in_row++);
            publish_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
    }
};

RedisBus::RedisBus(RedisBusSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}
RedisBus::~RedisBus() = default;

bool RedisBus::publish(const BusMessage& m) { return impl_->publish(m); }

void RedisBus::set_handler(Handler h) {
    auto p = std::make_shared<const Handler>(std::move(h));
    std::lock_guard lk(impl_->handler_mu);
    impl_->handler = std::move(p);
}

bool RedisBus::routed() const noexcept { return impl_->routed; }
bool RedisBus::listen(const BusRoute& route) { return impl_->listen(route); }
void RedisBus::unlisten(const BusRoute& route) { impl_->unlisten(route); }
std::string RedisBus::channel_of(const BusRoute& route) const { return impl_->channel_of(route); }

bool RedisBus::subscribed() const noexcept { return impl_->is_subscribed.load(); }

bool RedisBus::wait_subscribed(Duration timeout) {
    std::unique_lock lk(impl_->state_mu);
    return impl_->state_cv.wait_for(lk, timeout, [&] { return impl_->is_subscribed.load() || impl_->stop; }) &&
           impl_->is_subscribed.load();
}

RedisBusStats RedisBus::stats() const noexcept {
    RedisBusStats s;
    s.published = impl_->published.load();
    s.publish_failures = impl_->publish_failures.load();
    s.received = impl_->received.load();
    s.malformed = impl_->malformed.load();
    s.reconnects = impl_->reconnects.load();
    s.route_messages = impl_->route_messages.load();
    s.listen_failures = impl_->listen_failures.load();
    s.route_subscribes = impl_->route_subscribes.load();
    s.route_unsubscribes = impl_->route_unsubscribes.load();
    s.subscribe_errors = impl_->subscribe_errors.load();
    {
        std::lock_guard lk(impl_->interest_mu);
        s.channels = impl_->confirmed_channels + (impl_->common_confirmed ? 1 : 0);
        s.routes = impl_->listened_routes;
    }
    return s;
}

const RedisBusSettings& RedisBus::settings() const noexcept { return impl_->settings; }

}  // namespace wsgate
