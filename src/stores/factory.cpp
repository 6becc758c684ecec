#include <wsgate/stores/factory.hpp>
#include <wsgate/memory_store.hpp>

#ifdef WSGATE_HAVE_SQLITE
#include <wsgate/sqlite/sqlite_store.hpp>
#endif
#ifdef WSGATE_HAVE_REDIS
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>
#endif
#ifdef WSGATE_HAVE_DYNAMODB
#include <wsgate/dynamodb/dynamodb_store.hpp>
#endif

#include <algorithm>
#include <cctype>
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

// `key=value&...`, each key one of `allowed`.
std::map<std::string, std::string> parse_query(std::string_view spec, std::string_view query,
                                               std::initializer_list<std::string_view> allowed) {
    std::map<std::string, std::string> params;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto kv = query.substr(0, amp);
        const auto eq = kv.find('=');
        if (eq == std::string_view::npos || eq == 0) bad(spec, "query parameters are key=value");
        const std::string key{kv.substr(0, eq)};
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) bad(spec, "unknown parameter " + key);
        params[key] = std::string(kv.substr(eq + 1));
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
    return params;
}

// %XX sequences decoded (a value may be percent-encoded or plain).
std::string percent_decoded(std::string_view spec, std::string_view v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i] != '%') {
            out += v[i];
            continue;
        }
        unsigned char c = 0;
        const auto* first = v.data() + i + 1;
        if (i + 2 >= v.size() || std::from_chars(first, first + 2, c, 16).ptr != first + 2)
            bad(spec, "bad percent-encoding");
        out += static_cast<char>(c);
        i += 2;
    }
    return out;
}

struct DynamoDbUrl {
    std::string table;
    std::map<std::string, std::string> params;  // percent-decoded, none empty
};

DynamoDbUrl parse_dynamodb(std::string_view spec) {
    constexpr std::string_view scheme = "dynamodb://";
    DynamoDbUrl u;
    std::string_view rest = spec.substr(scheme.size());
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        u.params = parse_query(spec, rest.substr(q + 1), {"endpoint", "region", "create", "timeout_ms", "insecure"});
        rest = rest.substr(0, q);
    }
    // DynamoDB's own rule for table names; checked here so a typo fails at start, not per request.
    const bool name_ok = rest.size() >= 3 && rest.size() <= 255 && std::all_of(rest.begin(), rest.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
    });
    if (rest.empty()) bad(spec, "missing table (dynamodb://TABLE)");
    if (!name_ok) bad(spec, "a table name is 3-255 characters of A-Z a-z 0-9 _ - .");
    u.table = std::string(rest);
    for (auto& [key, value] : u.params) {
        value = percent_decoded(spec, value);
        if (value.empty()) bad(spec, "empty value for " + key);
    }
    if (auto it = u.params.find("endpoint"); it != u.params.end() && !it->second.starts_with("http://") &&
                                             !it->second.starts_with("https://"))
        bad(spec, "endpoint must be an http:// or https:// URL");
    for (const char* flag : {"create", "insecure"})
        if (auto it = u.params.find(flag); it != u.params.end() && it->second != "0" && it->second != "1")
            bad(spec, std::string(flag) + " is 0 or 1");
    return u;
}

struct RedisUrl {
    std::string password, host;
    int port = 6379;
    int database = 0;
    bool cluster = false;
    std::map<std::string, std::string> params;
};

RedisUrl parse_redis(std::string_view spec, std::initializer_list<std::string_view> allowed) {
    constexpr std::string_view scheme = "redis://";
    RedisUrl u;
    std::string_view rest = spec.substr(scheme.size());
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        u.params = parse_query(spec, rest.substr(q + 1), allowed);
        rest = rest.substr(0, q);
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
    if (auto it = u.params.find("cluster"); it != u.params.end()) {
        if (it->second != "0" && it->second != "1") bad(spec, "cluster is 0 or 1");
        u.cluster = it->second == "1";
        if (u.cluster && u.database != 0) bad(spec, "a Redis Cluster has database 0 only (no /DB)");
    }
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
#ifdef WSGATE_HAVE_DYNAMODB
    if (scheme == "dynamodb") return true;
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
        const auto u = parse_redis(spec, {"prefix", "pool", "timeout_ms", "retry_ms", "cluster"});
#ifdef WSGATE_HAVE_REDIS
        RedisStoreSettings s;
        s.endpoint.host = u.host;
        s.endpoint.port = u.port;
        s.endpoint.password = u.password;
        s.endpoint.database = u.database;
        s.endpoint.cluster = u.cluster;
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
    if (spec.starts_with("dynamodb://")) {
        const auto u = parse_dynamodb(spec);
        const auto param = [&](const char* key) {
            auto it = u.params.find(key);
            return it == u.params.end() ? std::string{} : it->second;
        };
        const auto timeout = param("timeout_ms");
        const int timeout_ms = timeout.empty() ? 0 : to_int(spec, timeout, 1, 600'000, "timeout_ms");
#ifdef WSGATE_HAVE_DYNAMODB
        DynamoDbStoreSettings s;
        s.table = u.table;
        s.endpoint = param("endpoint");
        s.region = param("region");
        s.allow_plain_http = param("insecure") == "1";
        if (timeout_ms > 0) {
            aws::CurlSettings curl;
            curl.connect_timeout = curl.request_timeout = std::chrono::milliseconds(timeout_ms);
            s.http = std::make_shared<aws::CurlHttpClient>(curl);
        }
        if (param("create") == "1") (void)create_dynamodb_table(s);
        return std::make_shared<DynamoDbConnectionStore>(std::move(s));
#else
        (void)timeout_ms;
        bad(spec, "wsgate was built without DynamoDB (WSGATE_WITH_DYNAMODB=OFF)");
#endif
    }
    bad(spec, "expected memory, sqlite:PATH, redis://HOST:PORT or dynamodb://TABLE");
}

std::shared_ptr<Bus> make_bus(std::string_view spec, std::string_view channel) {
    if (spec.empty() || spec == "none") return nullptr;
    if (spec.starts_with("redis://")) {
        const auto u = parse_redis(spec, {"channel", "timeout_ms", "channels", "cluster"});
#ifdef WSGATE_HAVE_REDIS
        RedisBusSettings s;
        s.endpoint.host = u.host;
        s.endpoint.port = u.port;
        s.endpoint.password = u.password;
        s.endpoint.database = u.database;
        s.endpoint.cluster = u.cluster;
        if (auto it = u.params.find("channel"); it != u.params.end()) s.channel = it->second;
        if (auto it = u.params.find("timeout_ms"); it != u.params.end())
            s.endpoint.connect_timeout = s.endpoint.command_timeout =
                std::chrono::milliseconds(to_int(spec, it->second, 1, 600'000, "timeout_ms"));
        if (auto it = u.params.find("channels"); it != u.params.end()) {
            if (it->second == "routed") s.per_topic_channels = true;
            else if (it->second == "single") s.per_topic_channels = false;
            else bad(spec, "channels is routed or single");
        }
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
