#include "redis_conn.hpp"

#include "redis_cluster.hpp"

#include <poll.h>
#include <sys/time.h>

#include <algorithm>

#include <string>

namespace wsgate::detail {
namespace {

timeval to_timeval(Duration d) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
    return tv;
}

std::string where(const std::string& host, int port) { return "redis " + host + ":" + std::to_string(port); }

}  // namespace

std::string_view error_of(const redisReply* r) noexcept {
    if (r == nullptr || r->type != REDIS_REPLY_ERROR) return {};
    return {r->str, r->len};
}

std::string_view str_of(const redisReply* r) noexcept {
    if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return {};
    return {r->str, r->len};
}

void throw_if_error(const redisReply* r, std::string_view what) {
    const auto e = error_of(r);
    if (r != nullptr && r->type != REDIS_REPLY_ERROR) return;
    const std::string msg = "redis " + std::string(what) + ": " + std::string(e);
    if (e.starts_with("WRONGTYPE")) throw StoreError(store_errc::corrupt, msg);
    if (e.starts_with("READONLY")) throw StoreError(store_errc::read_only, msg);
    if (e.starts_with("LOADING") || e.starts_with("BUSY") || e.starts_with("TRYAGAIN"))
        throw StoreError(store_errc::busy, msg);
    throw StoreError(store_errc::unavailable, msg);
}

void RedisConn::reset() noexcept {
    if (c_ != nullptr) redisFree(c_);
    c_ = nullptr;
}

std::string RedisConn::peer() const {
    if (host_.empty()) return ep_.host + ":" + std::to_string(ep_.port);
    return host_ + ":" + std::to_string(port_);
}

void RedisConn::io_failure(std::string_view what) {
    std::string msg = "redis " + peer() + ": " + std::string(what);
    if (c_ != nullptr && c_->errstr[0] != '\0') msg += std::string(": ") + c_->errstr;
    reset();
    throw StoreError(store_errc::unavailable, msg);
}

void RedisConn::open(const std::string& host, int port) {
    reset();
    host_ = host;
    port_ = port;
    c_ = redisConnectWithTimeout(host.c_str(), port, to_timeval(ep_.connect_timeout));
    if (c_ == nullptr) throw StoreError(store_errc::unavailable, where(host, port) + ": out of memory");
    if (c_->err != 0) io_failure("cannot connect");
    redisSetTimeout(c_, to_timeval(ep_.command_timeout));
    redisEnableKeepAlive(c_);
    if (!ep_.password.empty()) {
        auto r = command({"AUTH", ep_.password});
        if (error_of(r.get()).size() > 0) {
            reset();
            throw StoreError(store_errc::unavailable, where(host, port) + ": AUTH refused");
        }
    }
    if (ep_.database != 0) {
        const auto db = std::to_string(ep_.database);
        auto r = command({"SELECT", db});
        if (error_of(r.get()).size() > 0) {
            reset();
            throw StoreError(store_errc::unavailable, where(host, port) + ": SELECT " + db + " refused");
        }
    }
}

void RedisConn::open_slot_owner() {
    std::vector<ClusterSeeds::Node> seeds;
    if (!hint_host_.empty()) seeds.emplace_back(hint_host_, hint_port_);
    for (auto& n : seeds_->candidates(ep_)) seeds.push_back(std::move(n));
    std::string last_error = "no node to ask";
    for (const auto& [host, port] : seeds) {
        try {
            open(host, port);
            const auto map = SlotMap::load(*this);
            seeds_->remember(map);
            const auto* owner = map.owner(slot_);
            if (owner == nullptr) {
                last_error = "no master serves slot " + std::to_string(slot_) + " (cluster down?)";
                continue;
            }
            if (owner->host != host_ || owner->port != port_) open(owner->host, owner->port);
            hint_host_.clear();
            return;
        } catch (const StoreError& e) {
            last_error = e.what();
        }
    }
    reset();
    throw StoreError(store_errc::unavailable, "redis cluster via " + ep_.host + ":" + std::to_string(ep_.port) +
                                                  ": cannot reach the master of slot " + std::to_string(slot_) +
                                                  ": " + last_error);
}

bool RedisConn::ensure() {
    if (c_ != nullptr) return false;
    if (ep_.cluster && slot_ >= 0) open_slot_owner();
    else open(ep_.host, ep_.port);
    return true;
}

void RedisConn::note_redirect(const redisReply* r) {
    Redirect to;
    if (!ep_.cluster || slot_ < 0 || !parse_redirect(error_of(r), to) || !to.moved) return;
    hint_host_ = to.host.empty() ? host_ : to.host;
    hint_port_ = to.port;
    reset();
}

bool RedisConn::drop_if_closed() noexcept {
    if (c_ == nullptr || c_->fd < 0) return false;
    pollfd p{};
    p.fd = c_->fd;
    p.events = POLLIN;
    if (::poll(&p, 1, 0) == 0) return false;
    reset();
    return true;
}

bool RedisConn::try_ensure() noexcept {
    try {
        ensure();
        return true;
    } catch (const StoreError&) {
        return false;
    }
}

void RedisConn::append(const Args& args) {
    ensure();
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (auto a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
        io_failure("cannot queue command");
}

Reply RedisConn::next() {
    if (c_ == nullptr) throw StoreError(store_errc::unavailable, "redis " + peer() + ": not connected");
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || r == nullptr) io_failure("no reply");
    Reply reply{static_cast<redisReply*>(r)};
    if (reply->type == REDIS_REPLY_ERROR) note_redirect(reply.get());
    return reply;
}

Reply RedisConn::command(const Args& args) {
    // A MOVED reply dropped the connection and named the new owner: follow it (a failover or a
    // resharding), a few times at most.
    for (int hop = 0;; ++hop) {
        append(args);
        auto r = next();
        if (c_ != nullptr || hop == 3 || r->type != REDIS_REPLY_ERROR) return r;
    }
}

}  // namespace wsgate::detail
