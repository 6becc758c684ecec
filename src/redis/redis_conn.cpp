#include "redis_conn.hpp"

#include <sys/time.h>

#include <string>

namespace wsgate::detail {
namespace {

timeval to_timeval(Duration d) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
    return tv;
}

std::string where(const RedisEndpoint& ep) { return "redis " + ep.host + ":" + std::to_string(ep.port); }

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
    if (e.starts_with("LOADING") || e.starts_with("BUSY")) throw StoreError(store_errc::busy, msg);
    throw StoreError(store_errc::unavailable, msg);
}

void RedisConn::reset() noexcept {
    if (c_ != nullptr) redisFree(c_);
    c_ = nullptr;
}

void RedisConn::io_failure(std::string_view what) {
    std::string msg = where(ep_) + ": " + std::string(what);
    if (c_ != nullptr && c_->errstr[0] != '\0') msg += std::string(": ") + c_->errstr;
    reset();
    throw StoreError(store_errc::unavailable, msg);
}

bool RedisConn::ensure() {
    if (c_ != nullptr) return false;
    c_ = redisConnectWithTimeout(ep_.host.c_str(), ep_.port, to_timeval(ep_.connect_timeout));
    if (c_ == nullptr) throw StoreError(store_errc::unavailable, where(ep_) + ": out of memory");
    if (c_->err != 0) io_failure("cannot connect");
    redisSetTimeout(c_, to_timeval(ep_.command_timeout));
    redisEnableKeepAlive(c_);
    if (!ep_.password.empty()) {
        auto r = command({"AUTH", ep_.password});
        if (error_of(r.get()).size() > 0) {
            reset();
            throw StoreError(store_errc::unavailable, where(ep_) + ": AUTH refused");
        }
    }
    if (ep_.database != 0) {
        const auto db = std::to_string(ep_.database);
        auto r = command({"SELECT", db});
        if (error_of(r.get()).size() > 0) {
            reset();
            throw StoreError(store_errc::unavailable, where(ep_) + ": SELECT " + db + " refused");
        }
    }
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
    if (c_ == nullptr) throw StoreError(store_errc::unavailable, where(ep_) + ": not connected");
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || r == nullptr) io_failure("no reply");
    return Reply{static_cast<redisReply*>(r)};
}

Reply RedisConn::command(const Args& args) {
    append(args);
    return next();
}

}  // namespace wsgate::detail
