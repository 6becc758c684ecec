#pragma once
// Definitions for connection_store.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/connection_store.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/store_util.hpp>

#include <wsgate/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsgate {

// ---- ConnectionStore::resolve default: built on the primitives, for any backend ----------

WSGATE_INLINE void ConnectionStore::resolve_into(const Audience& a, ResolvedAudience& out) {
    auto r = resolve(a);
    out.reset();
    out.ids = std::move(r.ids);
    out.filtered = r.filtered;
}

WSGATE_INLINE ResolvedAudience ConnectionStore::resolve(const Audience& a) {
    ResolvedAudience out;
    std::vector<ConnectionId> candidates;
    switch (a.kind) {
        case Audience::Kind::topic: candidates = subscribers(a.topic_name); break;
        case Audience::Kind::user:
        case Audience::Kind::users:
            for (const auto& u : detail::unique_users(a)) {
                auto ids = connections_of_user(u);
                candidates.insert(candidates.end(), ids.begin(), ids.end());
            }
            break;
        case Audience::Kind::connections: candidates = a.connection_ids; break;
        case Audience::Kind::everyone: {
            std::string cursor;
            do {
                auto page = scan(cursor, 1000);
                for (auto& r : page.records) {
                    if (a.admits(r)) out.ids.push_back(std::move(r.id));
                    else ++out.filtered;
                }
                cursor = std::move(page.next_cursor);
            } while (!cursor.empty());
            return out;
        }
    }
    const bool need_record = !a.excluded_device.empty() || !a.required_permission.empty();
    for (auto& id : candidates) {
        if (!need_record) {
            if (id == a.excluded_connection) ++out.filtered;
            else out.ids.push_back(std::move(id));
            continue;
        }
        auto rec = get(id);
        if (!rec) continue;
        if (a.admits(*rec)) out.ids.push_back(std::move(id));
        else ++out.filtered;
    }
    return out;
}

WSGATE_INLINE std::size_t ConnectionStore::remove_node(const std::string& node_id) {
    // Ids first, removals after: removing while paging could skip records.
    std::vector<ConnectionId> ids;
    std::string cursor;
    do {
        auto page = scan(cursor, 1000);
        for (auto& r : page.records)
            if (r.node_id == node_id) ids.push_back(std::move(r.id));
        cursor = std::move(page.next_cursor);
    } while (!cursor.empty());
    std::size_t removed = 0;
    for (const auto& id : ids) removed += remove(id) ? 1 : 0;
    return removed;
}

// ---- topic streams: the defaults refuse, for stores without them ---------------------------

namespace detail {
[[noreturn]] inline void no_streams() {
    throw StoreError(store_errc::invalid_argument, "this ConnectionStore keeps no topic streams (supports_streams() is false)");
}
}  // namespace detail

WSGATE_INLINE StreamPosition ConnectionStore::append(const std::string&, std::string_view, TimePoint,
                                                    const HistoryRetention&) {
    detail::no_streams();
}
WSGATE_INLINE StreamRead ConnectionStore::read_stream(const std::string&, std::uint64_t, std::size_t, TimePoint) {
    detail::no_streams();
}
WSGATE_INLINE StreamRead ConnectionStore::latest(const std::string&, std::size_t, TimePoint) { detail::no_streams(); }
WSGATE_INLINE void ConnectionStore::save_cursor(const std::string&, const std::string&, const StreamPosition&, TimePoint,
                                               Duration) {
    detail::no_streams();
}
WSGATE_INLINE std::optional<StreamPosition> ConnectionStore::load_cursor(const std::string&, const std::string&,
                                                                        TimePoint) {
    detail::no_streams();
}

WSGATE_INLINE std::vector<PresenceMember> ConnectionStore::presence(const std::string& topic) {
    std::vector<PresenceMember> out;
    for (const auto& id : subscribers(topic)) {
        auto rec = get(id);
        if (!rec) continue;
        out.push_back({rec->id, rec->principal.kind, rec->principal.user_id, rec->principal.device_id, rec->node_id});
    }
    return out;
}

WSGATE_INLINE std::string with_position(std::string_view body, const StreamPosition& p) {
    std::string out;
    // The epoch is the store's own token; dump() quotes it safely whatever it holds.
    const std::string epoch = nlohmann::json(p.epoch).dump();
    out.reserve(body.size() + 32 + epoch.size());
    if (body.size() < 2 || body.front() != '{' || body.back() != '}')
        throw std::invalid_argument("wsgate::with_position: the body is not a JSON object's text");
    out.append(body.substr(0, body.size() - 1));
    if (body.size() > 2) out.push_back(',');
    out.append("\"offset\":").append(std::to_string(p.offset)).append(",\"epoch\":").append(epoch).append("}");
    return out;
}

}  // namespace wsgate
