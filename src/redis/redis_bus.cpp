#include <wsgate/redis/redis_bus.hpp>

#include "redis_conn.hpp"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

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

}  // namespace

struct RedisBus::Impl {
    RedisBusSettings settings;

    std::mutex pub_mu;  // guards pub, pub_failures_in_row, next_pub_attempt
    RedisConn pub;
    unsigned pub_failures_in_row = 0;
    std::chrono::steady_clock::time_point next_pub_attempt{};

    std::mutex handler_mu;  // held while the handler runs
    std::shared_ptr<const Handler> handler;

    std::mutex state_mu;  // with state_cv: stop and subscribed transitions
    std::condition_variable state_cv;
    bool stop = false;
    std::atomic<bool> is_subscribed{false};

    std::atomic<std::uint64_t> published{0}, publish_failures{0}, received{0}, malformed{0}, reconnects{0};
    std::thread thread;

    explicit Impl(RedisBusSettings s) : settings(std::move(s)), pub(settings.endpoint) {
        if (settings.channel.empty()) throw std::invalid_argument("RedisBus: empty channel name");
        thread = std::thread([this] { run(); });
    }

    ~Impl() {
        {
            std::lock_guard lk(state_mu);
            stop = true;
        }
        state_cv.notify_all();
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

    void dispatch(const redisReply* r) {
        // Pub/sub pushes: ["message", channel, payload].
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || str_of(r->element[0]) != "message") return;
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

    // One subscribed session: returns when the connection fails or the bus stops.
    void session(RedisConn& sub) {
        auto r = sub.command({"SUBSCRIBE", settings.channel});
        if (r->type != REDIS_REPLY_ARRAY) return;
        set_subscribed(true);
        redisContext* c = sub.raw();
        using steady = std::chrono::steady_clock;
        const auto health = settings.health_check_interval;
        auto last_rx = steady::now();
        bool ping_outstanding = false;
        steady::time_point ping_sent = last_rx;
        while (!stopping()) {
            void* raw = nullptr;
            if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return;
            if (raw != nullptr) {
                Reply msg{static_cast<redisReply*>(raw)};
                last_rx = steady::now();
                ping_outstanding = false;  // any traffic proves the connection alive (the pong too)
                dispatch(msg.get());
                continue;
            }
            pollfd p{};
            p.fd = c->fd;
            p.events = POLLIN;
            const int n = ::poll(&p, 1, 100);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return;
            if (n == 0) {
                // A quiet connection may be half-open (server frozen, NAT dropped it): PING it,
                // and give up on it if the PING goes unanswered for another interval.
                if (health.count() <= 0) continue;
                const auto now = steady::now();
                if (ping_outstanding && now - ping_sent > health) return;
                if (!ping_outstanding && now - last_rx > health) {
                    if (redisAppendCommand(c, "PING") != REDIS_OK) return;
                    int done = 0;
                    do {
                        if (redisBufferWrite(c, &done) != REDIS_OK) return;
                    } while (done == 0);
                    ping_sent = now;
                    ping_outstanding = true;
                }
                continue;
            }
            if (redisBufferRead(c) != REDIS_OK) return;
        }
    }

    void run() {
        unsigned attempt = 0;
        bool had_session = false;
        while (!stopping()) {
            RedisConn sub(settings.endpoint);
            try {
                sub.ensure();
                if (had_session) reconnects.fetch_add(1, std::memory_order_relaxed);
                had_session = true;
                attempt = 0;
                session(sub);
            } catch (const StoreError&) {
                // unreachable: back off below
            }
            set_subscribed(false);
            sub.reset();
            std::unique_lock lk(state_mu);
            state_cv.wait_for(lk, backoff(settings, attempt), [&] { return stop; });
            ++attempt;
        }
    }

    bool publish(const BusMessage& m) {
        std::string text;
        try {
            text = encode_bus_message(m);
        } catch (const std::exception&) {  // e.g. text that is not UTF-8 in the audience
            publish_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        std::lock_guard lk(pub_mu);
        const auto now = std::chrono::steady_clock::now();
        if (!pub.connected() && now < next_pub_attempt) {
            publish_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        try {
            auto r = pub.command({"PUBLISH", settings.channel, text});
            if (r->type != REDIS_REPLY_INTEGER) throw StoreError(store_errc::unavailable, "PUBLISH refused");
            pub_failures_in_row = 0;
            published.fetch_add(1, std::memory_order_relaxed);
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
    return s;
}

const RedisBusSettings& RedisBus::settings() const noexcept { return impl_->settings; }

}  // namespace wsgate
