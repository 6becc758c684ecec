#pragma once
// Definitions for memory_store.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/memory_store.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/store_util.hpp>

#include <algorithm>
#include <mutex>

namespace wsgate {

// ---- InMemoryConnectionStore ------------------------------------------------------------

WSGATE_INLINE void InMemoryConnectionStore::unindex_user(UserIndex& index, const std::string& key, Entry* e) {
    auto it = index.find(key);
    if (it == index.end()) return;
    it->second.erase(e);
    if (it->second.empty()) index.erase(it);
}

WSGATE_INLINE ConnectionRecord InMemoryConnectionStore::snapshot(const Entry& e) {
    ConnectionRecord r = e.record;
    r.topics.reserve(e.topics.size());
    for (const auto& [t, pos] : e.topics) r.topics.push_back(t);
    return r;
}

WSGATE_INLINE void InMemoryConnectionStore::drop_member_locked(Entry& e, const std::string& topic, std::size_t pos) {
    auto it = by_topic_.find(topic);
    if (it == by_topic_.end()) return;
    auto& members = it->second;
    // Swap-remove: the last member takes the freed slot and learns its new position.
    if (pos + 1 != members.size()) {
        members[pos] = std::move(members.back());
        members[pos].entry->topics.find(topic)->second = pos;
    }
    members.pop_back();
    if (members.empty()) by_topic_.erase(it);
    (void)e;
}

WSGATE_INLINE void InMemoryConnectionStore::put(const ConnectionRecord& r) {
    std::unique_lock lock(mu_);
    auto [it, inserted] = by_id_.try_emplace(r.id);
    Entry& e = it->second;
    if (!inserted) {
        if (!e.record.principal.user_id.empty()) unindex_user(by_user_, e.record.principal.user_id, &e);
        unindex_user(by_node_, e.record.node_id, &e);
        by_expiry_.erase(e.expiry);
    }
    e.record = r;
    e.record.topics.clear();
    if (!r.principal.user_id.empty()) by_user_[r.principal.user_id].insert(&e);
    by_node_[r.node_id].insert(&e);
    e.expiry = by_expiry_.emplace(r.expires_at, &e);
}

WSGATE_INLINE std::optional<ConnectionRecord> InMemoryConnectionStore::get(const ConnectionId& id) {
    std::shared_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    return snapshot(it->second);
}

WSGATE_INLINE void InMemoryConnectionStore::erase_locked(std::map<ConnectionId, Entry>::iterator it) {
    Entry& e = it->second;
    for (const auto& [t, pos] : e.topics) drop_member_locked(e, t, pos);
    if (!e.record.principal.user_id.empty()) unindex_user(by_user_, e.record.principal.user_id, &e);
    unindex_user(by_node_, e.record.node_id, &e);
    by_expiry_.erase(e.expiry);
    by_id_.erase(it);
}

WSGATE_INLINE bool InMemoryConnectionStore::remove(const ConnectionId& id) {
    std::unique_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return false;
    erase_locked(it);
    return true;
}

WSGATE_INLINE bool InMemoryConnectionStore::touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry) {
    std::unique_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return false;
    Entry& e = it->second;
    e.record.last_seen = now;
    if (new_expiry) {
        by_expiry_.erase(e.expiry);
        e.record.expires_at = *new_expiry;
        e.expiry = by_expiry_.emplace(*new_expiry, &e);
    }
    return true;
}

WSGATE_INLINE bool InMemoryConnectionStore::subscribe(const ConnectionId& id, const std::string& topic) {
    return subscribe_capped(id, topic, 0) != SubscribeResult::not_found;
}

WSGATE_INLINE SubscribeResult InMemoryConnectionStore::subscribe_capped(const ConnectionId& id, const std::string& topic,
                                                                       std::size_t max_topics) {
    // Checked and applied under one exclusive lock: racing subscribes cannot both take the last slot.
    std::unique_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return SubscribeResult::not_found;
    Entry& e = it->second;
    if (e.topics.contains(topic)) return SubscribeResult::already_subscribed;
    // Refused before anything is touched: no empty member list is left behind.
    if (max_topics > 0 && e.topics.size() >= max_topics) return SubscribeResult::limit_reached;
    auto& members = by_topic_[topic];
    e.topics.emplace(topic, members.size());
    members.push_back(Member{e.record.id, &e});
    return SubscribeResult::subscribed;
}

WSGATE_INLINE bool InMemoryConnectionStore::unsubscribe(const ConnectionId& id, const std::string& topic) {
    std::unique_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return false;
    Entry& e = it->second;
    auto t = e.topics.find(topic);
    if (t == e.topics.end()) return false;
    const std::size_t pos = t->second;
    e.topics.erase(t);
    drop_member_locked(e, topic, pos);
    return true;
}

WSGATE_INLINE std::vector<std::string> InMemoryConnectionStore::topics_of(const ConnectionId& id) {
    std::shared_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return {};
    std::vector<std::string> out;
    out.reserve(it->second.topics.size());
    for (const auto& [t, pos] : it->second.topics) out.push_back(t);
    return out;
}

WSGATE_INLINE std::vector<ConnectionId> InMemoryConnectionStore::subscribers(const std::string& topic) {
    std::shared_lock lock(mu_);
    std::vector<ConnectionId> out;
    auto it = by_topic_.find(topic);
    if (it == by_topic_.end()) return out;
    out.reserve(it->second.size());
    for (const Member& m : it->second) out.push_back(m.id);
    return out;
}

WSGATE_INLINE std::vector<ConnectionId> InMemoryConnectionStore::connections_of_user(const std::string& user_id) {
    std::shared_lock lock(mu_);
    std::vector<ConnectionId> out;
    auto it = by_user_.find(user_id);
    if (it == by_user_.end()) return out;
    out.reserve(it->second.size());
    for (const Entry* e : it->second) out.push_back(e->record.id);
    return out;
}

WSGATE_INLINE ScanPage InMemoryConnectionStore::scan(const std::string& cursor, std::size_t limit) {
    std::shared_lock lock(mu_);
    ScanPage page;
    if (limit == 0) limit = 1;
    auto it = cursor.empty() ? by_id_.begin() : by_id_.upper_bound(cursor);
    for (; it != by_id_.end() && page.records.size() < limit; ++it) page.records.push_back(snapshot(it->second));
    if (it != by_id_.end() && !page.records.empty()) page.next_cursor = page.records.back().id;
    return page;
}

WSGATE_INLINE std::vector<ConnectionRecord> InMemoryConnectionStore::expire(TimePoint now) {
    std::unique_lock lock(mu_);
    std::vector<ConnectionRecord> out;
    while (!by_expiry_.empty() && by_expiry_.begin()->first <= now) {
        Entry* e = by_expiry_.begin()->second;
        out.push_back(snapshot(*e));
        erase_locked(by_id_.find(e->record.id));
    }
    return out;
}

WSGATE_INLINE std::size_t InMemoryConnectionStore::count() {
    std::shared_lock lock(mu_);
    return by_id_.size();
}

WSGATE_INLINE ResolvedAudience InMemoryConnectionStore::resolve(const Audience& a) {
    std::shared_lock lock(mu_);
    ResolvedAudience out;
    const bool unfiltered = a.excluded_connection.empty() && a.excluded_device.empty() && a.required_permission.empty();
    auto consider = [&](const Entry& e) {
        if (a.admits(e.record.id, e.record.principal)) out.ids.push_back(e.record.id);
        else ++out.filtered;
    };
    switch (a.kind) {
        case Audience::Kind::everyone:
            out.ids.reserve(by_id_.size());
            for (const auto& [id, e] : by_id_) consider(e);
            break;
        case Audience::Kind::topic:
            if (auto it = by_topic_.find(a.topic_name); it != by_topic_.end()) {
                const auto& members = it->second;
                out.ids.reserve(members.size());
                if (unfiltered) {
                    for (const Member& m : members) out.ids.push_back(m.id);
                } else {
                    for (const Member& m : members) consider(*m.entry);
                }
            }
            break;
        case Audience::Kind::user:
        case Audience::Kind::users:
            for (const auto& u : detail::unique_users(a))
                if (auto it = by_user_.find(u); it != by_user_.end())
                    for (const Entry* e : it->second) consider(*e);
            break;
        case Audience::Kind::connections:
            for (const auto& id : a.connection_ids)
                if (auto it = by_id_.find(id); it != by_id_.end()) consider(it->second);
            break;
    }
    return out;
}

WSGATE_INLINE std::size_t InMemoryConnectionStore::remove_node(const std::string& node_id) {
    std::unique_lock lock(mu_);
    auto it = by_node_.find(node_id);
    if (it == by_node_.end()) return 0;
    std::vector<ConnectionId> ids;
    ids.reserve(it->second.size());
    for (const Entry* e : it->second) ids.push_back(e->record.id);
    for (const auto& id : ids) erase_locked(by_id_.find(id));
    return ids.size();
}

WSGATE_INLINE void InMemoryConnectionStore::renew_lease(const std::string& node_id, TimePoint now, Duration lease) {
    std::unique_lock lock(mu_);
    leases_[node_id] = now + lease;
}

WSGATE_INLINE std::size_t InMemoryConnectionStore::reap_expired_nodes(TimePoint now, std::size_t limit) {
    std::unique_lock lock(mu_);
    std::size_t removed = 0;
    for (auto l = leases_.begin(); l != leases_.end() && removed < limit;) {
        if (l->second > now) {
            ++l;
            continue;
        }
        auto n = by_node_.find(l->first);
        while (n != by_node_.end() && removed < limit) {
            // erase_locked drops the node's index entry with its last record.
            const bool last = n->second.size() == 1;
            erase_locked(by_id_.find((*n->second.begin())->record.id));
            ++removed;
            if (last) n = by_node_.end();
        }
        if (n == by_node_.end()) l = leases_.erase(l);
        else ++l;
    }
    return removed;
}

}  // namespace wsgate
