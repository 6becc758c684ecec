#pragma once
// Definitions for connection_store.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/connection_store.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/store_util.hpp>

#include <algorithm>

namespace wsgate {

// ---- ConnectionStore::resolve default: built on the primitives, for any backend ----------

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

}  // namespace wsgate
