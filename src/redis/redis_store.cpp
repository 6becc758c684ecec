#include <wsgate/redis/redis_store.hpp>

#include <wsgate/detail/store_util.hpp>
#include "redis_cluster.hpp"
#include "redis_conn.hpp"

#include <wsgate/random.hpp>

#include <algorithm>
#include <charconv>
#include <array>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

namespace wsgate {
namespace {

using detail::Args;
using detail::RedisConn;
using detail::Reply;
using detail::str_of;
using detail::throw_if_error;

// Every script reads ARGV[1] = key prefix; keys are built inside (standalone Redis, see header).
// extend(k, ttl): give k at least ttl ms to live (never shortens, never makes it immortal).
constexpr const char* lua_prelude = R"lua(
local P = ARGV[1]
local function extend(k, ttl)
  local cur = redis.call('PTTL', k)
  if cur == -1 or (cur >= 0 and cur < ttl) then redis.call('PEXPIRE', k, ttl) end
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- meta entry: '<server ms when the record key's TTL fires>|<filter fields>'
local function meta_of(ttl, tail) return string.format('%.0f', server_ms() + ttl) .. '|' .. tail end
-- Removes a record with its subscriptions and index entries; 1 for the caller whose DEL removed it.
local function drop(id)
  local key = P .. 'conn:' .. id
  local user = redis.call('HGET', key, 'user')
  local node = redis.call('HGET', key, 'node')
  local n = redis.call('DEL', key)
  local subs = P .. 'subs:' .. id
  for _, t in ipairs(redis.call('SMEMBERS', subs)) do redis.call('SREM', P .. 'topic:' .. t, id) end
  redis.call('DEL', subs)
  if user and user ~= '' then redis.call('SREM', P .. 'user:' .. user, id) end
  if node then redis.call('SREM', P .. 'node:' .. node, id) end
  redis.call('ZREM', P .. 'expiry', id)
  redis.call('ZREM', P .. 'ids', id)
  redis.call('HDEL', P .. 'meta', id)
  return n
end
)lua";

// ARGV: P, id, user, ttl_ms, expires_ms, meta tail, node, field, value, ...
constexpr const char* lua_put = R"lua(
local id, user, ttl, exp, node = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[7]
local key = P .. 'conn:' .. id
local old = redis.call('HGET', key, 'user')
if old and old ~= '' and old ~= user then redis.call('SREM', P .. 'user:' .. old, id) end
local old_node = redis.call('HGET', key, 'node')
if old_node and old_node ~= node then redis.call('SREM', P .. 'node:' .. old_node, id) end
redis.call('HSET', key, unpack(ARGV, 8, #ARGV))
redis.call('PEXPIRE', key, ttl)
redis.call('HSET', P .. 'meta', id, meta_of(ttl, ARGV[6]))
local subs = P .. 'subs:' .. id
if redis.call('PEXPIRE', subs, ttl) == 1 then
  for _, t in ipairs(redis.call('SMEMBERS', subs)) do extend(P .. 'topic:' .. t, ttl) end
end
if user ~= '' then
  redis.call('SADD', P .. 'user:' .. user, id)
  extend(P .. 'user:' .. user, ttl)
end
redis.call('SADD', P .. 'node:' .. node, id)
extend(P .. 'node:' .. node, ttl)
redis.call('ZADD', P .. 'expiry', exp, id)
redis.call('ZADD', P .. 'ids', 0, id)
return 1
)lua";

// ARGV: P, id. Returns 1 for the caller whose DEL removed the record.
constexpr const char* lua_remove = R"lua(
return drop(ARGV[2])
)lua";

// ARGV: P, id, now_ms [, expires_ms, ttl_ms]
constexpr const char* lua_touch = R"lua(
local id = ARGV[2]
local key = P .. 'conn:' .. id
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'last_seen', ARGV[3])
if ARGV[4] then
  local ttl = tonumber(ARGV[5])
  redis.call('HSET', key, 'expires_at', ARGV[4])
  redis.call('ZADD', P .. 'expiry', ARGV[4], id)
  redis.call('PEXPIRE', key, ttl)
  local m = redis.call('HGET', P .. 'meta', id)
  if m then redis.call('HSET', P .. 'meta', id, meta_of(ttl, string.sub(m, string.find(m, '|', 1, true) + 1))) end
  local subs = P .. 'subs:' .. id
  if redis.call('PEXPIRE', subs, ttl) == 1 then
    for _, t in ipairs(redis.call('SMEMBERS', subs)) do extend(P .. 'topic:' .. t, ttl) end
  end
  local user = redis.call('HGET', key, 'user')
  if user and user ~= '' then extend(P .. 'user:' .. user, ttl) end
  local node = redis.call('HGET', key, 'node')
  if node then extend(P .. 'node:' .. node, ttl) end
end
return 1
)lua";

// ARGV: P, id, topic, max_topics (0: no cap). 0: no such connection, 1: subscribed,
// 2: already subscribed, 3: at the cap (nothing written). One script: the count and the write
// cannot interleave with another client's.
constexpr const char* lua_subscribe = R"lua(
local id, topic, cap = ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl = redis.call('PTTL', P .. 'conn:' .. id)
if ttl == -2 then return 0 end
local subs = P .. 'subs:' .. id
if redis.call('SISMEMBER', subs, topic) == 1 then return 2 end
if cap > 0 and redis.call('SCARD', subs) >= cap then return 3 end
redis.call('SADD', subs, topic)
redis.call('SADD', P .. 'topic:' .. topic, id)
if ttl > 0 then
  redis.call('PEXPIRE', subs, ttl)
  extend(P .. 'topic:' .. topic, ttl)
end
return 1
)lua";

// ARGV: P, id, topic
constexpr const char* lua_unsubscribe = R"lua(
local n = redis.call('SREM', P .. 'subs:' .. ARGV[2], ARGV[3])
redis.call('SREM', P .. 'topic:' .. ARGV[3], ARGV[2])
return n
)lua";

// ARGV: P, index key, 'set'|'zset'|'list', 'ids'|'filter' [, id, ...]. The live members of an
// index ('list': of the ids given), each followed by its meta entry for 'filter'. Liveness comes
// from the meta hash (one HMGET per 4000 members, not a call per member); members whose record
// key's TTL has fired are dropped from the index and the meta hash.
constexpr const char* lua_members = R"lua(
local index, kind, mode = ARGV[2], ARGV[3], ARGV[4]
local members
if kind == 'zset' then members = redis.call('ZRANGE', index, 0, -1)
elseif kind == 'list' then members = {unpack(ARGV, 5, #ARGV)}
else members = redis.call('SMEMBERS', index) end
local now = server_ms()
local out, stale = {}, {}
for i = 1, #members, 4000 do
  local chunk = {unpack(members, i, math.min(i + 3999, #members))}
  local metas = redis.call('HMGET', P .. 'meta', unpack(chunk))
  for j, id in ipairs(chunk) do
    local m = metas[j]
    local deadline = m and tonumber(string.match(m, '^(%d+)|'))
    if deadline and deadline > now then
      out[#out + 1] = id
      if mode == 'filter' then out[#out + 1] = m end
    elseif kind ~= 'list' or m then
      stale[#stale + 1] = id
    end
  end
end
for i = 1, #stale, 500 do
  local chunk = {unpack(stale, i, math.min(i + 499, #stale))}
  if kind == 'zset' then
    redis.call('ZREM', index, unpack(chunk))
    redis.call('ZREM', P .. 'expiry', unpack(chunk))
  elseif kind == 'set' then
    redis.call('SREM', index, unpack(chunk))
  end
  redis.call('HDEL', P .. 'meta', unpack(chunk))
end
return out
)lua";

// ARGV: P, id. The record's topics, or nothing if the record is gone.
constexpr const char* lua_topics = R"lua(
if redis.call('EXISTS', P .. 'conn:' .. ARGV[2]) == 0 then return {} end
return redis.call('SMEMBERS', P .. 'subs:' .. ARGV[2])
)lua";

// ARGV: P, now_ms, limit. Claims and removes up to `limit` expired records atomically; returns
// {claimed, {hash, topics, hash, topics, ...}} (records already dropped by key TTL are only cleaned).
constexpr const char* lua_expire = R"lua(
local ids = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = P .. 'conn:' .. id
  local h = redis.call('HGETALL', key)
  local subs = P .. 'subs:' .. id
  local topics = redis.call('SMEMBERS', subs)
  for _, t in ipairs(topics) do redis.call('SREM', P .. 'topic:' .. t, id) end
  redis.call('DEL', key, subs)
  for i = 1, #h, 2 do
    if h[i] == 'user' and h[i + 1] ~= '' then redis.call('SREM', P .. 'user:' .. h[i + 1], id) end
    if h[i] == 'node' then redis.call('SREM', P .. 'node:' .. h[i + 1], id) end
  end
  redis.call('ZREM', P .. 'expiry', id)
  redis.call('ZREM', P .. 'ids', id)
  redis.call('HDEL', P .. 'meta', id)
  if #h > 0 then out[#out + 1] = h; out[#out + 1] = topics end
end
return {#ids, out}
)lua";

// ARGV: P, node. Removes every record of the node; returns how many this call removed.
constexpr const char* lua_remove_node = R"lua(
local nk = P .. 'node:' .. ARGV[2]
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', nk)) do
  if redis.call('HGET', P .. 'conn:' .. id, 'node') == ARGV[2] then n = n + drop(id) end
end
redis.call('DEL', nk)
return n
)lua";

// ARGV: P, node, lease_ms. Leases are scored on the server's clock: skew between nodes never
// makes a live node look dead.
constexpr const char* lua_renew_lease = R"lua(
redis.call('ZADD', P .. 'leases', string.format('%.0f', server_ms() + tonumber(ARGV[3])), ARGV[2])
return 1
)lua";

// ARGV: P, node. 1 if the node's lease is there and has not run out (server clock).
constexpr const char* lua_holds_lease = R"lua(
local expires = redis.call('ZSCORE', P .. 'leases', ARGV[2])
if expires and tonumber(expires) > server_ms() then return 1 end
return 0
)lua";

// ARGV: P, limit. Removes up to `limit` records of nodes whose lease ran out (server clock);
// a node's lease goes once its index is empty. Returns how many records this call removed.
constexpr const char* lua_reap = R"lua(
local limit = tonumber(ARGV[2])
local now = server_ms()
local n = 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', string.format('%.0f', now))) do
  if limit <= 0 then break end
  local nk = P .. 'node:' .. node
  for _, id in ipairs(redis.call('SPOP', nk, limit)) do
    limit = limit - 1
    if redis.call('HGET', P .. 'conn:' .. id, 'node') == node then n = n + drop(id) end
  end
  if redis.call('SCARD', nk) == 0 then redis.call('ZREM', P .. 'leases', node) end
end
return n
)lua";

// ---- topic streams ----------------------------------------------------------------------------
// Stream helpers, prepended to the stream scripts only. A topic's hash P..'stream:'..t holds
// `epoch` and `top`; its history P..'history:'..t holds entries '<offset>-1' {at, body}.
constexpr const char* lua_stream_prelude = R"lua(
local function stream_keys(t) return P .. 'stream:' .. t, P .. 'history:' .. t end
-- The stream's epoch; a new one (the caller's random token) if the hash was missing, and then
-- whatever history the old epoch left is dropped: its offsets mean nothing in the new one.
local function ensure_stream(h, x, token)
  if redis.call('HSETNX', h, 'epoch', token) == 1 then
    redis.call('HSET', h, 'top', 0)
    redis.call('DEL', x)
    return token
  end
  return redis.call('HGET', h, 'epoch')
end
local function field(e, name)
  local f = e[2]
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
  return nil
end
local function at_of(e) return tonumber(field(e, 'at')) or 0 end
local function offset_of(e) return tonumber(string.match(e[1], '^(%d+)-')) end
local function num(n) return string.format('%.0f', n) end
)lua";

// ARGV: P, topic, token, body, now_ms, max_count, max_age_ms, ttl_ms (0: permanent).
// Returns {offset, epoch}.
constexpr const char* lua_append = R"lua(
local now, max_count, max_age, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local h, x = stream_keys(ARGV[2])
local epoch = ensure_stream(h, x, ARGV[3])
local top = redis.call('HINCRBY', h, 'top', 1)
if max_count > 0 then
  redis.call('XADD', x, 'MAXLEN', '=', max_count, num(top) .. '-1', 'at', ARGV[5], 'body', ARGV[4])
  if max_age > 0 then
    -- From the front only, up to the first entry young enough: with clock skew between nodes an
    -- older `at` may follow a younger one, and dropping it would open a gap in the history.
    local cutoff = now - max_age
    while true do
      local batch = redis.call('XRANGE', x, '-', '+', 'COUNT', 64)
      if #batch == 0 then break end
      local keep = nil
      for _, e in ipairs(batch) do
        if at_of(e) >= cutoff then keep = e[1]; break end
      end
      if keep then
        redis.call('XTRIM', x, 'MINID', '=', keep)
        break
      end
      local ids = {}
      for i, e in ipairs(batch) do ids[i] = e[1] end
      redis.call('XDEL', x, unpack(ids))
    end
  end
else
  redis.call('DEL', x)
end
-- Epoch, top and history expire together or not at all.
if ttl > 0 then
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', x, ttl)
else
  redis.call('PERSIST', h)
  redis.call('PERSIST', x)
end
return {num(top), epoch}
)lua";

// ARGV: P, topic, 'after'|'latest', after, limit, not_before_ms. Never writes: a stream without
// its hash (never appended to, or lost) reads as top {0, ''} with nothing kept. Age is judged
// from the front, as in lua_append: `first` is the oldest entry with at >= not_before, and every
// entry from it on counts as kept. Returns {epoch, top, first_retained, {id, at, body, ...}}.
constexpr const char* lua_read = R"lua(
local mode, after, limit, nb = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h, x = stream_keys(ARGV[2])
local head = redis.call('HMGET', h, 'epoch', 'top')
if not head[1] then return {'', '0', '1', {}} end
local epoch, top = head[1], tonumber(head[2]) or 0
-- The oldest kept offset with at >= not_before.
local first = top + 1
local from = '-'
while true do
  local batch = redis.call('XRANGE', x, from, '+', 'COUNT', 64)
  if #batch == 0 then break end
  local found = false
  for _, e in ipairs(batch) do
    if at_of(e) >= nb then first = offset_of(e); found = true; break end
  end
  if found then break end
  from = '(' .. batch[#batch][1]
end
-- The kept history is the contiguous range first..top: an entry after `first` whose `at` looks
-- older (clock skew between nodes) is still returned, as append() still keeps it.
local picked = {}
if limit > 0 and first <= top then
  if mode == 'latest' then
    picked = redis.call('XREVRANGE', x, '+', num(first) .. '-0', 'COUNT', num(limit))
    for i = 1, math.floor(#picked / 2) do picked[i], picked[#picked + 1 - i] = picked[#picked + 1 - i], picked[i] end
  elseif after < top then
    picked = redis.call('XRANGE', x, num(math.max(after + 1, first)) .. '-0', '+', 'COUNT', num(limit))
  end
end
local out = {}
for _, e in ipairs(picked) do
  out[#out + 1] = e[1]
  out[#out + 1] = field(e, 'at') or '0'
  out[#out + 1] = field(e, 'body') or '{}'
end
return {epoch, num(top), num(first), out}
)lua";

// ARGV: P, device_key, topic, offset, epoch, keep_ms. Forward-only within an epoch; another epoch
// replaces. Every save (even an ignored one) restarts the keep_ms countdown.
constexpr const char* lua_save_cursor = R"lua(
local k = P .. 'cursor:' .. string.len(ARGV[2]) .. ':' .. ARGV[2] .. ':' .. ARGV[3]
local off, epoch, keep = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local cur = redis.call('HMGET', k, 'epoch', 'offset')
if cur[1] ~= epoch or (tonumber(cur[2]) or -1) < off then
  redis.call('HSET', k, 'epoch', epoch, 'offset', ARGV[4])
end
if keep > 0 then redis.call('PEXPIRE', k, keep) else redis.call('DEL', k) end
return 1
)lua";

// ARGV: P, topic. {id, node, kind, user, device, principal-if-no-kind, ...} for each live subscriber
// (liveness from the meta hash, as lua_members; a record hash already gone is skipped).
constexpr const char* lua_presence = R"lua(
local members = redis.call('SMEMBERS', P .. 'topic:' .. ARGV[2])
local now = server_ms()
local out = {}
for i = 1, #members, 4000 do
  local chunk = {unpack(members, i, math.min(i + 3999, #members))}
  local metas = redis.call('HMGET', P .. 'meta', unpack(chunk))
  for j, id in ipairs(chunk) do
    local m = metas[j]
    local deadline = m and tonumber(string.match(m, '^(%d+)|'))
    if deadline and deadline > now then
      local f = redis.call('HMGET', P .. 'conn:' .. id, 'node', 'kind', 'user', 'device')
      if f[1] then
        out[#out + 1] = id
        out[#out + 1] = f[1]
        out[#out + 1] = f[2] or ''
        out[#out + 1] = f[3] or ''
        out[#out + 1] = f[4] or ''
        out[#out + 1] = f[2] and '' or (redis.call('HGET', P .. 'conn:' .. id, 'principal') or '')
      end
    end
  end
end
return out
)lua";

enum Script : std::size_t {
    s_put, s_remove, s_touch, s_subscribe, s_unsubscribe, s_members, s_topics, s_expire, s_remove_node,
    s_renew_lease, s_reap, s_append, s_read, s_save_cursor, s_presence, s_holds_lease, s_count
};

const std::array<std::string, s_count>& script_bodies() {
    static const std::array<std::string, s_count> bodies = [] {
        std::array<std::string, s_count> b;
        const char* raw[s_count] = {lua_put,         lua_remove,      lua_touch,  lua_subscribe,
                                    lua_unsubscribe, lua_members,     lua_topics, lua_expire,
                                    lua_remove_node, lua_renew_lease, lua_reap,   lua_append,
                                    lua_read,        lua_save_cursor, lua_presence,   lua_holds_lease};
        for (std::size_t i = 0; i < s_count; ++i) {
            b[i] = lua_prelude;
            if (i == s_append || i == s_read) b[i] += lua_stream_prelude;
            b[i] += raw[i];
        }
        return b;
    }();
    return bodies;
}

std::string ms(TimePoint t) { return std::to_string(to_unix_ms(t)); }

ConnectionRecord record_from_hash(const redisReply* h, const std::string& prefix) {
    ConnectionRecord r;
    std::string_view principal, attributes;
    for (std::size_t i = 0; i + 1 < h->elements; i += 2) {
        const auto k = str_of(h->element[i]);
        const auto v = str_of(h->element[i + 1]);
        if (k == "id") r.id = v;
        else if (k == "node") r.node_id = v;
        else if (k == "connected_at") r.connected_at = from_unix_ms(std::stoll(std::string(v)));
        else if (k == "expires_at") r.expires_at = from_unix_ms(std::stoll(std::string(v)));
        else if (k == "last_seen") r.last_seen = from_unix_ms(std::stoll(std::string(v)));
        else if (k == "source_ip") r.source_ip = v;
        else if (k == "user_agent") r.user_agent = v;
        else if (k == "principal") principal = v;
        else if (k == "attributes") attributes = v;
    }
    auto p = nlohmann::json::parse(principal, nullptr, false);
    auto a = nlohmann::json::parse(attributes, nullptr, false);
    if (r.id.empty() || !p.is_object() || !a.is_object())
        throw StoreError(store_errc::corrupt, "redis store " + prefix + ": unreadable record " + r.id);
    try {
        r.principal = p.get<Principal>();
        r.attributes = a.get<std::map<std::string, std::string>>();
    } catch (const nlohmann::json::exception&) {
        throw StoreError(store_errc::corrupt, "redis store " + prefix + ": unreadable record " + r.id);
    }
    return r;
}

std::vector<std::string> strings_of(const redisReply* r) {
    std::vector<std::string> out;
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return out;
    out.reserve(r->elements);
    for (std::size_t i = 0; i < r->elements; ++i) out.emplace_back(str_of(r->element[i]));
    return out;
}

}  // namespace

struct RedisConnectionStore::Impl {
    RedisStoreSettings settings;
    struct Slot {
        Slot(const RedisEndpoint& ep, int key_slot, std::shared_ptr<detail::ClusterSeeds> seeds)
            : conn(ep, key_slot, std::move(seeds)) {}
        std::mutex mu;
        RedisConn conn;
        std::array<std::string, s_count> sha;  // loaded on each (re)connect
        std::uint64_t generation = 0;           // Impl::generation when it connected
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::atomic<std::size_t> next{0};
    /// Until then (steady clock ticks) calls fail fast: Redis was unreachable (RedisStoreSettings::retry_after).
    std::atomic<std::chrono::steady_clock::rep> unreachable_until{0};
    /// Bumped whenever a connection is lost: the other pooled connections were opened to the same
    /// server (perhaps since restarted), so each reconnects before its next call instead of
    /// failing it on a socket the server closed long ago.
    std::atomic<std::uint64_t> generation{0};

    explicit Impl(RedisStoreSettings s) : settings(std::move(s)) {
        if (settings.pool_size == 0) settings.pool_size = 1;
        int key_slot = -1;
        if (settings.endpoint.cluster) {
            if (settings.endpoint.database != 0)
                throw std::invalid_argument("RedisConnectionStore: a Redis Cluster has database 0 only");
            // Every script touches several keys: they must share one slot.
            if (!detail::has_hash_tag(settings.key_prefix)) settings.key_prefix = "{" + settings.key_prefix + "}";
            if (!detail::has_hash_tag(settings.key_prefix))
                throw std::invalid_argument("RedisConnectionStore: a Redis Cluster needs a key prefix");
            key_slot = detail::key_slot(settings.key_prefix);
        }
        // The pooled connections share what they learn of the cluster's masters.
        auto seeds = std::make_shared<detail::ClusterSeeds>();
        for (std::size_t i = 0; i < settings.pool_size; ++i)
            slots.push_back(std::make_unique<Slot>(settings.endpoint, key_slot, seeds));
    }

    // Runs fn(slot) on one pooled connection, held exclusively.
    template <class F>
    auto with(F&& fn) {
        // A free connection if there is one, else wait for the next in turn.
        const std::size_t start = next.fetch_add(1, std::memory_order_relaxed);
        std::unique_lock<std::mutex> lk;
        Slot* chosen = nullptr;
        for (std::size_t i = 0; i < slots.size() && chosen == nullptr; ++i) {
            Slot& cand = *slots[(start + i) % slots.size()];
            std::unique_lock<std::mutex> l(cand.mu, std::try_to_lock);
            if (l.owns_lock()) {
                lk = std::move(l);
                chosen = &cand;
            }
        }
        if (chosen == nullptr) {
            chosen = slots[start % slots.size()].get();
            lk = std::unique_lock<std::mutex>(chosen->mu);
        }
        Slot& s = *chosen;
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        if (now < unreachable_until.load(std::memory_order_relaxed))
            throw StoreError(store_errc::unavailable, "redis at " + settings.endpoint.host + ":" +
                                                          std::to_string(settings.endpoint.port) +
                                                          ": unreachable a moment ago; retrying shortly");
        // Any failure drops the connection: a half-read pipeline must never serve the next call.
        try {
            const auto current = generation.load(std::memory_order_relaxed);
            if (s.conn.connected() && s.generation != current) s.conn.reset();
            // A server that closed this idle connection (restarted, failed over) costs no call.
            if (s.conn.drop_if_closed()) generation.fetch_add(1, std::memory_order_relaxed);
            if (s.conn.ensure()) {
                s.generation = current;
                const auto& bodies = script_bodies();
                for (std::size_t i = 0; i < s_count; ++i) s.conn.append({"SCRIPT", "LOAD", bodies[i]});
                std::vector<Reply> loaded;
                for (std::size_t i = 0; i < s_count; ++i) loaded.push_back(s.conn.next());
                for (std::size_t i = 0; i < s_count; ++i) {
                    throw_if_error(loaded[i].get(), "SCRIPT LOAD");
                    s.sha[i] = std::string(str_of(loaded[i].get()));
                }
            }
            return fn(s);
        } catch (...) {
            // A connection-level failure has dropped the connection already; an error reply has not.
            if (!s.conn.connected()) generation.fetch_add(1, std::memory_order_relaxed);
            if (!s.conn.connected() && settings.retry_after.count() > 0)
                unreachable_until.store(
                    std::chrono::steady_clock::now().time_since_epoch().count() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(settings.retry_after).count(),
                    std::memory_order_relaxed);
            s.conn.reset();
            throw;
        }
    }

    Args script_args(Slot& s, Script which, const Args& argv, bool by_sha) const {
        Args a;
        a.reserve(argv.size() + 4);
        a.push_back(by_sha ? "EVALSHA" : "EVAL");
        a.push_back(by_sha ? std::string_view{s.sha[which]} : std::string_view{script_bodies()[which]});
        a.push_back("0");
        a.push_back(settings.key_prefix);
        a.insert(a.end(), argv.begin(), argv.end());
        return a;
    }

    static bool noscript(const redisReply* r) { return detail::error_of(r).starts_with("NOSCRIPT"); }

    // One script call; falls back to EVAL if the server lost its script cache (SCRIPT FLUSH).
    Reply eval(Slot& s, Script which, const Args& argv, std::string_view what) {
        auto r = s.conn.command(script_args(s, which, argv, true));
        if (noscript(r.get())) r = s.conn.command(script_args(s, which, argv, false));
        throw_if_error(r.get(), what);
        return r;
    }

    // Many script calls in one pipelined round trip.
    std::vector<Reply> eval_many(Slot& s, Script which, const std::vector<Args>& argvs, std::string_view what) {
        for (const auto& a : argvs) s.conn.append(script_args(s, which, a, true));
        std::vector<Reply> out;
        out.reserve(argvs.size());
        for (std::size_t i = 0; i < argvs.size(); ++i) out.push_back(s.conn.next());
        for (std::size_t i = 0; i < argvs.size(); ++i) {
            if (noscript(out[i].get())) out[i] = s.conn.command(script_args(s, which, argvs[i], false));
            throw_if_error(out[i].get(), what);
        }
        return out;
    }

    std::string key(std::string_view kind, std::string_view name) const {
        std::string k = settings.key_prefix;
        k += kind;
        k += name;
        return k;
    }

    // Native key TTL: what is left of the record's life, measured from its last activity, plus
    // the grace. Relative, so a test's ManualClock (or skew between hosts) never drops a live key.
    std::int64_t key_ttl_ms(TimePoint expires_at, TimePoint base) const {
        if (base == TimePoint{}) base = std::chrono::system_clock::now();
        const auto left = std::max<std::int64_t>(0, to_unix_ms(expires_at) - to_unix_ms(base));
        return left + std::max<std::int64_t>(1, settings.key_ttl_grace.count());
    }

    struct PutArgs {
        std::vector<std::string> owned;
        Args args;
    };
    PutArgs put_args(const ConnectionRecord& r) const {
        PutArgs p;
        const auto base = std::max(r.connected_at, r.last_seen);
        p.owned = {r.id,
                   r.principal.user_id,
                   std::to_string(key_ttl_ms(r.expires_at, base)),
                   ms(r.expires_at),
                   meta_tail(r.principal),
                   r.node_id,
                   "id", r.id,
                   "user", r.principal.user_id,
                   "kind", std::string(to_string(r.principal.kind)),
                   "device", r.principal.device_id,
                   "perms", detail::join_permissions(r.principal.permissions),
                   "node", r.node_id,
                   "connected_at", ms(r.connected_at),
                   "expires_at", ms(r.expires_at),
                   "last_seen", ms(r.last_seen),
                   "source_ip", r.source_ip,
                   "user_agent", r.user_agent,
                   "principal", nlohmann::json(r.principal).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   "attributes", nlohmann::json(r.attributes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
        p.args.assign(p.owned.begin(), p.owned.end());
        return p;
    }

    // The filter fields of a meta entry: length-prefixed device and user, then the permissions.
    static std::string meta_tail(const Principal& p) {
        std::string t = std::to_string(p.device_id.size());
        t += '|';
        t += p.device_id;
        t += std::to_string(p.user_id.size());
        t += '|';
        t += p.user_id;
        t += detail::join_permissions(p.permissions);
        return t;
    }
    struct MetaView {
        std::string_view device, user, perms;
    };
    // Parses '<deadline>|<meta_tail>'; false if malformed.
    static bool parse_meta(std::string_view m, MetaView& v) {
        auto field = [&](std::string_view& out) {
            const auto bar = m.find('|');
            if (bar == std::string_view::npos) return false;
            std::size_t len = 0;
            const auto [p, ec] = std::from_chars(m.data(), m.data() + bar, len);
            if (ec != std::errc{} || p != m.data() + bar || len > m.size() - bar - 1) return false;
            out = m.substr(bar + 1, len);
            m.remove_prefix(bar + 1 + len);
            return true;
        };
        const auto first = m.find('|');
        if (first == std::string_view::npos) return false;
        m.remove_prefix(first + 1);
        if (!field(v.device) || !field(v.user)) return false;
        v.perms = m;
        return true;
    }

    void read_filtered(const redisReply* r, const Audience& a, ResolvedAudience& out,
                       std::unordered_set<std::string>* seen) const {
        if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return;
        for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
            const auto id = str_of(r->element[i]);
            MetaView v;
            if (!parse_meta(str_of(r->element[i + 1]), v))
                throw StoreError(store_errc::corrupt, "redis store " + settings.key_prefix + ": unreadable meta entry");
            if (seen != nullptr && !seen->emplace(id).second) continue;
            if (detail::admits(a, id, v.user, v.device, v.perms)) out.ids.emplace_back(id);
            else ++out.filtered;
        }
    }
};

RedisConnectionStore::RedisConnectionStore(RedisStoreSettings settings)
    : impl_(std::make_unique<Impl>(std::move(settings))) {}
RedisConnectionStore::~RedisConnectionStore() = default;

const RedisStoreSettings& RedisConnectionStore::settings() const noexcept { return impl_->settings; }

void RedisConnectionStore::put(const ConnectionRecord& r) {
    auto p = impl_->put_args(r);
    impl_->with([&](Impl::Slot& s) { impl_->eval(s, s_put, p.args, "put"); });
}

void RedisConnectionStore::put_many(std::span<const ConnectionRecord> records) {
    if (records.empty()) return;
    std::vector<Impl::PutArgs> ps;
    ps.reserve(records.size());
    std::vector<Args> argvs;
    argvs.reserve(records.size());
    for (const auto& r : records) {
        ps.push_back(impl_->put_args(r));
        argvs.push_back(ps.back().args);
    }
    impl_->with([&](Impl::Slot& s) { impl_->eval_many(s, s_put, argvs, "put"); });
}

std::optional<ConnectionRecord> RedisConnectionStore::get(const ConnectionId& id) {
    const auto k = impl_->key("conn:", id);
    const auto subs = impl_->key("subs:", id);
    return impl_->with([&](Impl::Slot& s) -> std::optional<ConnectionRecord> {
        s.conn.append({"HGETALL", k});
        s.conn.append({"SMEMBERS", subs});
        auto h = s.conn.next();
        auto t = s.conn.next();
        throw_if_error(h.get(), "get");
        throw_if_error(t.get(), "get");
        if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) return std::nullopt;
        auto r = record_from_hash(h.get(), impl_->settings.key_prefix);
        r.topics = strings_of(t.get());
        std::sort(r.topics.begin(), r.topics.end());
        return r;
    });
}

bool RedisConnectionStore::remove(const ConnectionId& id) {
    return impl_->with([&](Impl::Slot& s) { return impl_->eval(s, s_remove, {id}, "remove")->integer == 1; });
}

std::size_t RedisConnectionStore::remove_many(std::span<const ConnectionId> ids) {
    if (ids.empty()) return 0;
    std::vector<Args> argvs;
    argvs.reserve(ids.size());
    for (const auto& id : ids) argvs.push_back({id});
    return impl_->with([&](Impl::Slot& s) {
        std::size_t n = 0;
        for (const auto& r : impl_->eval_many(s, s_remove, argvs, "remove")) n += r->integer == 1 ? 1 : 0;
        return n;
    });
}

bool RedisConnectionStore::touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry) {
    const auto now_ms = ms(now);
    std::string exp_ms, ttl_ms;
    Args args{id, now_ms};
    if (new_expiry) {
        exp_ms = ms(*new_expiry);
        ttl_ms = std::to_string(impl_->key_ttl_ms(*new_expiry, now));
        args.push_back(exp_ms);
        args.push_back(ttl_ms);
    }
    return impl_->with([&](Impl::Slot& s) { return impl_->eval(s, s_touch, args, "touch")->integer == 1; });
}

bool RedisConnectionStore::subscribe(const ConnectionId& id, const std::string& topic) {
    return subscribe_capped(id, topic, 0) != SubscribeResult::not_found;
}

SubscribeResult RedisConnectionStore::subscribe_capped(const ConnectionId& id, const std::string& topic,
                                                       std::size_t max_topics) {
    const std::string cap = std::to_string(max_topics);
    const auto code = impl_->with(
        [&](Impl::Slot& s) { return impl_->eval(s, s_subscribe, {id, topic, cap}, "subscribe")->integer; });
    switch (code) {
        case 1: return SubscribeResult::subscribed;
        case 2: return SubscribeResult::already_subscribed;
        case 3: return SubscribeResult::limit_reached;
        default: return SubscribeResult::not_found;
    }
}

bool RedisConnectionStore::unsubscribe(const ConnectionId& id, const std::string& topic) {
    return impl_->with(
        [&](Impl::Slot& s) { return impl_->eval(s, s_unsubscribe, {id, topic}, "unsubscribe")->integer == 1; });
}

std::vector<std::string> RedisConnectionStore::topics_of(const ConnectionId& id) {
    auto out = impl_->with([&](Impl::Slot& s) { return strings_of(impl_->eval(s, s_topics, {id}, "topics_of").get()); });
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<ConnectionId> RedisConnectionStore::subscribers(const std::string& topic) {
    const auto k = impl_->key("topic:", topic);
    return impl_->with(
        [&](Impl::Slot& s) { return strings_of(impl_->eval(s, s_members, {k, "set", "ids"}, "subscribers").get()); });
}

std::vector<ConnectionId> RedisConnectionStore::connections_of_user(const std::string& user_id) {
    if (user_id.empty()) return {};
    const auto k = impl_->key("user:", user_id);
    return impl_->with([&](Impl::Slot& s) {
        return strings_of(impl_->eval(s, s_members, {k, "set", "ids"}, "connections_of_user").get());
    });
}

ScanPage RedisConnectionStore::scan(const std::string& cursor, std::size_t limit) {
    if (limit == 0) limit = 1;
    const auto ids_key = impl_->key("ids", "");
    const std::string min = cursor.empty() ? std::string{"-"} : "(" + cursor;
    const auto count = std::to_string(limit + 1);
    return impl_->with([&](Impl::Slot& s) {
        ScanPage page;
        auto ids = strings_of([&] {
            auto r = s.conn.command({"ZRANGEBYLEX", ids_key, min, "+", "LIMIT", "0", count});
            throw_if_error(r.get(), "scan");
            return r;
        }().get());
        if (ids.size() > limit) {
            ids.resize(limit);
            page.next_cursor = ids.back();
        }
        std::vector<std::string> keys;
        keys.reserve(ids.size() * 2);
        for (const auto& id : ids) {
            keys.push_back(impl_->key("conn:", id));
            keys.push_back(impl_->key("subs:", id));
        }
        for (std::size_t i = 0; i < ids.size(); ++i) {
            s.conn.append({"HGETALL", keys[2 * i]});
            s.conn.append({"SMEMBERS", keys[2 * i + 1]});
        }
        std::vector<Reply> replies;
        for (std::size_t i = 0; i < ids.size() * 2; ++i) replies.push_back(s.conn.next());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            throw_if_error(replies[2 * i].get(), "scan");
            if (replies[2 * i]->type != REDIS_REPLY_ARRAY || replies[2 * i]->elements == 0) continue;  // stale
            auto r = record_from_hash(replies[2 * i].get(), impl_->settings.key_prefix);
            r.topics = strings_of(replies[2 * i + 1].get());
            std::sort(r.topics.begin(), r.topics.end());
            page.records.push_back(std::move(r));
        }
        return page;
    });
}

std::vector<ConnectionRecord> RedisConnectionStore::expire(TimePoint now) {
    constexpr std::size_t batch = 256;
    const auto now_ms = ms(now);
    const auto batch_s = std::to_string(batch);
    std::vector<ConnectionRecord> out;
    while (true) {
        const std::size_t claimed = impl_->with([&](Impl::Slot& s) -> std::size_t {
            auto r = impl_->eval(s, s_expire, {now_ms, batch_s}, "expire");
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return 0;
            const auto* recs = r->element[1];
            for (std::size_t i = 0; i + 1 < recs->elements; i += 2) {
                auto rec = record_from_hash(recs->element[i], impl_->settings.key_prefix);
                rec.topics = strings_of(recs->element[i + 1]);
                std::sort(rec.topics.begin(), rec.topics.end());
                out.push_back(std::move(rec));
            }
            return static_cast<std::size_t>(r->element[0]->integer);
        });
        if (claimed < batch) break;
    }
    return out;
}

std::size_t RedisConnectionStore::count() {
    const auto k = impl_->key("ids", "");
    return impl_->with([&](Impl::Slot& s) {
        auto r = s.conn.command({"ZCARD", k});
        throw_if_error(r.get(), "count");
        return static_cast<std::size_t>(r->integer);
    });
}

ResolvedAudience RedisConnectionStore::resolve(const Audience& a) {
    ResolvedAudience out;
    switch (a.kind) {
        case Audience::Kind::everyone:
        case Audience::Kind::topic: {
            const bool all = a.kind == Audience::Kind::everyone;
            const auto k = all ? impl_->key("ids", "") : impl_->key("topic:", a.topic_name);
            impl_->with([&](Impl::Slot& s) {
                auto r = impl_->eval(s, s_members, {k, all ? "zset" : "set", "filter"}, "resolve");
                impl_->read_filtered(r.get(), a, out, nullptr);
            });
            break;
        }
        case Audience::Kind::user:
        case Audience::Kind::users: {
            std::vector<std::string> keys;
            for (const auto& u : a.user_ids)
                if (!u.empty()) keys.push_back(impl_->key("user:", u));
            if (keys.empty()) break;
            std::vector<Args> argvs;
            for (const auto& k : keys) argvs.push_back({k, "set", "filter"});
            std::unordered_set<std::string> seen;
            impl_->with([&](Impl::Slot& s) {
                for (const auto& r : impl_->eval_many(s, s_members, argvs, "resolve"))
                    impl_->read_filtered(r.get(), a, out, &seen);
            });
            break;
        }
        case Audience::Kind::connections: {
            if (a.connection_ids.empty()) break;
            Args argv{"", "list", "filter"};
            for (const auto& id : a.connection_ids) argv.push_back(id);
            std::unordered_set<std::string> seen;
            impl_->with([&](Impl::Slot& s) {
                auto r = impl_->eval(s, s_members, argv, "resolve");
                impl_->read_filtered(r.get(), a, out, &seen);
            });
            break;
        }
    }
    return out;
}

bool RedisConnectionStore::ping() {
    try {
        return impl_->with([&](Impl::Slot& s) { return str_of(s.conn.command({"PING"}).get()) == "PONG"; });
    } catch (const StoreError&) {
        return false;
    }
}

std::size_t RedisConnectionStore::remove_node(const std::string& node_id) {
    return impl_->with([&](Impl::Slot& s) {
        return static_cast<std::size_t>(impl_->eval(s, s_remove_node, {node_id}, "remove_node")->integer);
    });
}

void RedisConnectionStore::renew_lease(const std::string& node_id, TimePoint now, Duration lease) {
    (void)now;  // the server's clock, see lua_renew_lease
    const auto lease_ms = std::to_string(std::max<std::int64_t>(1, lease.count()));
    impl_->with([&](Impl::Slot& s) { impl_->eval(s, s_renew_lease, {node_id, lease_ms}, "renew_lease"); });
}

bool RedisConnectionStore::holds_lease(const std::string& node_id, TimePoint now) {
    (void)now;  // the server's clock, see lua_holds_lease
    return impl_->with([&](Impl::Slot& s) { return impl_->eval(s, s_holds_lease, {node_id}, "holds_lease")->integer == 1; });
}

std::size_t RedisConnectionStore::reap_expired_nodes(TimePoint now, std::size_t limit) {
    (void)now;  // the server's clock, see lua_reap
    if (limit == 0) return 0;
    const auto limit_s = std::to_string(limit);
    return impl_->with([&](Impl::Slot& s) {
        return static_cast<std::size_t>(impl_->eval(s, s_reap, {limit_s}, "reap_expired_nodes")->integer);
    });
}

// ---- topic streams ----------------------------------------------------------------------------

namespace {

// Counts go to Lua as doubles and back to Redis as integers: keep them exact and parseable.
std::string count_arg(std::uint64_t n) { return std::to_string(std::min<std::uint64_t>(n, std::uint64_t{1} << 52)); }

std::uint64_t u64_of(const redisReply* r, std::string_view what) {
    const auto v = str_of(r);
    std::uint64_t n = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || p != v.data() + v.size())
        throw StoreError(store_errc::corrupt, std::string("redis store: unreadable number in ") + std::string(what));
    return n;
}

StreamRead stream_read_of(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[3]->type != REDIS_REPLY_ARRAY)
        throw StoreError(store_errc::corrupt, "redis store: unexpected reply to a stream read");
    StreamRead out;
    out.top.epoch = str_of(r->element[0]);
    out.top.offset = u64_of(r->element[1], "read_stream");
    out.first_retained = u64_of(r->element[2], "read_stream");
    const auto* e = r->element[3];
    out.publications.reserve(e->elements / 3);
    for (std::size_t i = 0; i + 2 < e->elements; i += 3) {
        StoredPublication p;
        const auto id = str_of(e->element[i]);
        const auto dash = id.find('-');
        const auto [end, ec] = std::from_chars(id.data(), id.data() + std::min(dash, id.size()), p.offset);
        if (ec != std::errc{} || dash == std::string_view::npos || end != id.data() + dash)
            throw StoreError(store_errc::corrupt, "redis store: unreadable history entry id");
        p.at = from_unix_ms(static_cast<std::int64_t>(u64_of(e->element[i + 1], "read_stream")));
        p.body = str_of(e->element[i + 2]);
        out.publications.push_back(std::move(p));
    }
    return out;
}

}  // namespace

StreamPosition RedisConnectionStore::append(const std::string& topic, std::string_view body, TimePoint now,
                                            const HistoryRetention& keep) {
    const auto token = random_token();
    const auto now_ms = ms(now);
    const auto max_count = count_arg(keep.max_count);
    const auto age_ms = std::max<std::int64_t>(0, keep.max_age.count());
    const auto max_age = std::to_string(age_ms);
    const auto grace_ms = std::max<std::int64_t>(1, impl_->settings.key_ttl_grace.count());
    const auto ttl = std::to_string(age_ms > 0 ? age_ms + grace_ms : 0);
    return impl_->with([&](Impl::Slot& s) {
        auto r = impl_->eval(s, s_append, {topic, token, body, now_ms, max_count, max_age, ttl}, "append");
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            throw StoreError(store_errc::corrupt, "redis store: unexpected reply to append");
        return StreamPosition{u64_of(r->element[0], "append"), std::string(str_of(r->element[1]))};
    });
}

StreamRead RedisConnectionStore::read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                             TimePoint not_before) {
    const auto after_s = std::to_string(after);
    const auto limit_s = count_arg(limit);
    const auto nb = ms(not_before);
    return impl_->with([&](Impl::Slot& s) {
        return stream_read_of(impl_->eval(s, s_read, {topic, "after", after_s, limit_s, nb}, "read_stream").get());
    });
}

StreamRead RedisConnectionStore::latest(const std::string& topic, std::size_t limit, TimePoint not_before) {
    const auto limit_s = count_arg(limit);
    const auto nb = ms(not_before);
    return impl_->with([&](Impl::Slot& s) {
        return stream_read_of(impl_->eval(s, s_read, {topic, "latest", "0", limit_s, nb}, "latest").get());
    });
}

void RedisConnectionStore::save_cursor(const std::string& device_key, const std::string& topic,
                                       const StreamPosition& p, TimePoint now, Duration keep_for) {
    (void)now;  // the server's clock, see lua_save_cursor
    const auto offset = std::to_string(p.offset);
    const auto keep = std::to_string(std::max<std::int64_t>(0, keep_for.count()));
    impl_->with([&](Impl::Slot& s) {
        impl_->eval(s, s_save_cursor, {device_key, topic, offset, p.epoch, keep}, "save_cursor");
    });
}

std::optional<StreamPosition> RedisConnectionStore::load_cursor(const std::string& device_key,
                                                                const std::string& topic, TimePoint now) {
    (void)now;
    const auto k = impl_->key("cursor:", std::to_string(device_key.size()) + ":" + device_key + ":" + topic);
    return impl_->with([&](Impl::Slot& s) -> std::optional<StreamPosition> {
        auto r = s.conn.command({"HMGET", k, "offset", "epoch"});
        throw_if_error(r.get(), "load_cursor");
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type == REDIS_REPLY_NIL ||
            r->element[1]->type == REDIS_REPLY_NIL)
            return std::nullopt;
        return StreamPosition{u64_of(r->element[0], "load_cursor"), std::string(str_of(r->element[1]))};
    });
}

std::vector<PresenceMember> RedisConnectionStore::presence(const std::string& topic) {
    return impl_->with([&](Impl::Slot& s) {
        auto r = impl_->eval(s, s_presence, {topic}, "presence");
        std::vector<PresenceMember> out;
        if (r->type != REDIS_REPLY_ARRAY) return out;
        out.reserve(r->elements / 6);
        for (std::size_t i = 0; i + 5 < r->elements; i += 6) {
            PresenceMember m;
            m.id = str_of(r->element[i]);
            m.node_id = str_of(r->element[i + 1]);
            const auto kind = str_of(r->element[i + 2]);
            m.user_id = str_of(r->element[i + 3]);
            m.device_id = str_of(r->element[i + 4]);
            if (!kind.empty()) {
                m.kind = principal_kind_from_string(kind);
            } else {  // written before records carried `kind`
                auto p = nlohmann::json::parse(str_of(r->element[i + 5]), nullptr, false);
                if (p.is_object() && p.contains("kind") && p["kind"].is_string())
                    m.kind = principal_kind_from_string(p["kind"].get<std::string>());
            }
            out.push_back(std::move(m));
        }
        std::sort(out.begin(), out.end(), [](const PresenceMember& a, const PresenceMember& b) { return a.id < b.id; });
        return out;
    });
}

}  // namespace wsgate
