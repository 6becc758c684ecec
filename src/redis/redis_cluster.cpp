#include "redis_cluster.hpp"

#include "redis_conn.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace wsgate::detail {
namespace {

constexpr std::array<std::uint16_t, 256> crc16_table() {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
        for (int b = 0; b < 8; ++b)
            crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
        t[i] = crc;
    }
    return t;
}
constexpr auto crc16_lookup = crc16_table();

std::uint16_t crc16(std::string_view s) noexcept {
    std::uint16_t crc = 0;
    for (const char ch : s)
        crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_lookup[((crc >> 8) ^ static_cast<unsigned char>(ch)) & 0xff]);
    return crc;
}

std::string_view tag_of(std::string_view key) noexcept {
    const auto open = key.find('{');
    if (open == std::string_view::npos) return key;
    const auto close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

bool to_int(std::string_view s, int& out) noexcept {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

int key_slot(std::string_view key) noexcept { return crc16(tag_of(key)) % cluster_slots; }

bool has_hash_tag(std::string_view key) noexcept { return tag_of(key).size() != key.size(); }

SlotMap SlotMap::load(RedisConn& seed) {
    auto r = seed.command({"CLUSTER", "SLOTS"});
    throw_if_error(r.get(), "CLUSTER SLOTS");
    if (r->type != REDIS_REPLY_ARRAY)
        throw StoreError(store_errc::unavailable, "redis CLUSTER SLOTS: unexpected reply");
    SlotMap m;
    for (std::size_t i = 0; i < r->elements; ++i) {
        // [first, last, [host, port, id, ...], replicas...]
        const redisReply* e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            throw StoreError(store_errc::unavailable, "redis CLUSTER SLOTS: unreadable entry");
        Range range;
        range.first = static_cast<int>(e->element[0]->integer);
        range.last = static_cast<int>(e->element[1]->integer);
        range.host = std::string(str_of(e->element[2]->element[0]));
        if (range.host.empty() || range.host == "?") range.host = seed.endpoint().host;
        range.port = static_cast<int>(e->element[2]->element[1]->integer);
        if (range.first < 0 || range.last >= cluster_slots || range.first > range.last)
            throw StoreError(store_errc::unavailable, "redis CLUSTER SLOTS: slot range out of bounds");
        m.ranges_.push_back(std::move(range));
    }
    std::sort(m.ranges_.begin(), m.ranges_.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
    return m;
}

const SlotMap::Range* SlotMap::owner(int slot) const noexcept {
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), slot,
                               [](int s, const Range& r) { return s < r.first; });
    if (it == ranges_.begin()) return nullptr;
    --it;
    return slot <= it->last ? &*it : nullptr;
}

std::vector<ClusterSeeds::Node> ClusterSeeds::candidates(const RedisEndpoint& ep) const {
    std::vector<Node> out{{ep.host, ep.port}};
    std::lock_guard lk(mu_);
    for (const auto& n : masters_)
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    return out;
}

void ClusterSeeds::remember(const SlotMap& map) {
    std::vector<Node> nodes;
    for (const auto& r : map.ranges()) {
        Node n{r.host, r.port};
        if (std::find(nodes.begin(), nodes.end(), n) == nodes.end()) nodes.push_back(std::move(n));
    }
    std::lock_guard lk(mu_);
    masters_ = std::move(nodes);
}

bool parse_redirect(std::string_view error, Redirect& out) {
    if (error.starts_with("MOVED ")) out.moved = true;
    else if (error.starts_with("ASK ")) out.moved = false;
    else return false;
    error.remove_prefix(out.moved ? 6 : 4);
    const auto space = error.find(' ');
    if (space == std::string_view::npos || !to_int(error.substr(0, space), out.slot)) return false;
    const auto addr = error.substr(space + 1);
    const auto colon = addr.rfind(':');
    if (colon == std::string_view::npos || !to_int(addr.substr(colon + 1), out.port)) return false;
    out.host = std::string(addr.substr(0, colon));
    return true;
}

}  // namespace wsgate::detail
