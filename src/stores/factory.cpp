#include <wsgate/stores/factory.hpp>
#include <wsgate/memory_store.hpp>

#ifdef WSGATE_HAVE_SQLITE
#include <wsgate/sqlite/sqlite_store.hpp>
#endif
#ifdef WSGATE_HAVE_REDIS
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>
#endif

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>

namespace wsgate {
namespace {

[[noreturn]] void bad(std::string_view spec, std::string_view why) {
    throw std::invalid_argument("wsgate: bad store/bus spec '" + std::string(spec) + "': " + std::string(why));
}

int to_int(std::string_view spec, std::string_view text, int lo, int hi, std::string_view what) {
    int v = 0;
    const auto* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc{} || p != end || v < lo || v > hi) bad(spec, std::string(what) + " out of range");
    return v;
}

struct RedisUrl {
    std::string password, host;
    int port = 6379;
    int database = 0;
    std::map<std::string, std::string> params;
};

RedisUrl parse_redis(std::string_view spec, std::initializer_list<std::string_view> allowed) {
    constexpr std::string_view scheme = "redis://";
    RedisUrl u;
    std::string_view rest = spec.substr(scheme.size());
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        std::string_view query = rest.substr(q + 1);
        rest = rest.substr(0, q);
        while (!query.empty()) {
            const auto amp = query.find('&');
            const auto kv = query.substr(0, amp);
            const auto eq = kv.find('=');
            if (eq == std::string_view::npos || eq == 0) bad(spec, "query parameters are key=value");
            const std::string key{kv.substr(0, eq)};
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) bad(spec, "unknown parameter " + key);
            u.params[key] = std::string(kv.substr(eq + 1));
            query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        }
    }
    if (auto at = rest.rfind('@'); at != std::string_view::npos) {
        auto cred = rest.substr(0, at);
        if (auto colon = cred.find(':'); colon != std::string_view::npos) cred = cred.substr(colon + 1);
        u.password = std::string(cred);
        rest = rest.substr(at + 1);
    }
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        const auto db = rest.substr(slash + 1);
        if (!db.empty()) u.database = to_int(spec, db, 0, 1 << 16, "database");
        rest = rest.substr(0, slash);
    }
    if (!rest.empty() && rest.front() == '[') {  // [v6]:port
        const auto close = rest.find(']');
        if (close == std::string_view::npos) bad(spec, "unclosed [");
        u.host = std::string(rest.substr(1, close - 1));
        rest = rest.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') bad(spec, "expected :PORT after ]");
            u.port = to_int(spec, rest.substr(1), 1, 65535, "port");
        }
    } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        u.host = std::string(rest.substr(0, colon));
        u.port = to_int(spec, rest.substr(colon + 1), 1, 65535, "port");
    } else {
        u.host = std::string(rest);
    }
    if (u.host.empty()) bad(spec, "missing host");
    return u;
}

}  // namespace

bool store_backend_available(std::string_view scheme) noexcept {
    if (scheme == "memory") return true;
#ifdef WSGATE_HAVE_SQLITE
    if (scheme == "sqlite") return true;
#endif
#ifdef WSGATE_HAVE_REDIS
    if (scheme == "redis") return true;
#endif
    return false;
}

std::shared_ptr<ConnectionStore> make_store(std::string_view spec) {
    if (spec == "memory") return std::make_shared<InMemoryConnectionStore>();
    if (spec.starts_with("sqlite:")) {
        const auto path = spec.substr(7);
        if (path.empty()) bad(spec, "missing path (sqlite:PATH)");
#ifdef WSGATE_HAVE_SQLITE
        return std::make_shared<SqliteConnectionStore>(std::string(path));
#else
        bad(spec, "wsgate was built without SQLite (WSGATE_WITH_SQLITE=OFF)");
#endif
    }
    if (spec.starts_with("redis://")) {
        const auto u = parse_redis(spec, {"prefix", "pool", "timeout_ms", "retry_ms"});
#ifdef WSGATE_HAVE_REDIS
        RedisStoreSettings s;
        s.endpoint.host = u.host;
        s.endpoint.port = u.port;
        s.endpoint.password = u.password;
        s.endpoint.database = u.database;
        if (auto it = u.params.find("prefix"); it != u.params.end()) s.key_prefix = it->second;
        if (auto it = u.params.find("pool"); it != u.params.end())
            s.pool_size = static_cast<std::size_t>(to_int(spec, it->second, 1, 256, "pool"));
        if (auto it = u.params.find("timeout_ms"); it != u.params.end())
            s.endpoint.connect_timeout = s.endpoint.command_timeout =
                std::chrono::milliseconds(to_int(spec, it->second, 1, 600'000, "timeout_ms"));
        if (auto it = u.params.find("retry_ms"); it != u.params.end())
            s.retry_after = std::chrono::milliseconds(to_int(spec, it->second, 0, 600'000, "retry_ms"));
        return std::make_shared<RedisConnectionStore>(std::move(s));
#else
        (void)u;
        bad(spec, "wsgate was built without Redis (WSGATE_WITH_REDIS=OFF)");
#endif
    }
    bad(spec, "expected memory, sqlite:PATH or redis://HOST:PORT");
}

std::shared_ptr<Bus> make_bus(std::string_view spec, std::string_view channel) {
    if (spec.empty() || spec == "none") return nullptr;
    if (spec.starts_with("redis://")) {
        const auto u = parse_redis(spec, {"channel", "timeout_ms"});
#ifdef WSGATE_HAVE_REDIS
        RedisBusSettings s;
        s.endpoint.host = u.host;
        s.endpoint.port = u.port;
        s.endpoint.password = u.password;
        s.endpoint.database = u.database;
        if (auto it = u.params.find("channel"); it != u.params.end()) s.channel = it->second;
        if (auto it = u.params.find("timeout_ms"); it != u.params.end())
            s.endpoint.connect_timeout = s.endpoint.command_timeout =
                std::chrono::milliseconds(to_int(spec, it->second, 1, 600'000, "timeout_ms"));
        if (!channel.empty()) s.channel = std::string(channel);
        if (s.channel.empty()) bad(spec, "empty channel");
        return std::make_shared<RedisBus>(std::move(s));
#else
        (void)u;
        (void)channel;
        bad(spec, "wsgate was built without Redis (WSGATE_WITH_REDIS=OFF)");
#endif
    }
    bad(spec, "expected none or redis://HOST:PORT");
}

}  // namespace wsgate
