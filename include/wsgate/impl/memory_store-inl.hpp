#pragma once
// Definitions for memory_store.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/memory_store.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/store_util.hpp>
#include <wsgate/random.hpp>

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
    // Most users have one or two connections: a new entry starts with two buckets (grown as
    // needed), not the thirteen a default set allocates on its first insert.
    if (!r.principal.user_id.empty()) by_user_.try_emplace(r.principal.user_id, 1).first->second.insert(&e);
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
    members.push_back(Member{&e});
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
    for (const Member& m : it->second) out.push_back(m.entry->record.id);
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
    ResolvedAudience out;
    resolve_into(a, out);
    return out;
}

WSGATE_INLINE void InMemoryConnectionStore::resolve_into(const Audience& a, ResolvedAudience& out) {
    out.reset();
    std::shared_lock lock(mu_);
    const bool unfiltered = a.excluded_connection.empty() && a.excluded_device.empty() && a.required_permission.empty();
    auto consider = [&](const Entry& e) {
        if (a.admits(e.record.id, e.record.principal)) out.add_id(e.record.id);
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
                    for (const Member& m : members) out.add_id(m.entry->record.id);
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

WSGATE_INLINE bool InMemoryConnectionStore::holds_lease(const std::string& node_id, TimePoint now) {
    std::shared_lock lock(mu_);
    auto it = leases_.find(node_id);
    return it != leases_.end() && it->second > now;
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

// ---- topic streams ------------------------------------------------------------------------

WSGATE_INLINE InMemoryConnectionStore::Stream& InMemoryConnectionStore::stream_locked(const std::string& topic) {
    auto [it, created] = streams_.try_emplace(topic);
    if (created) it->second.top.epoch = random_token(9);
    return it->second;
}

WSGATE_INLINE StreamPosition InMemoryConnectionStore::append(const std::string& topic, std::string_view body, TimePoint now,
                                                            const HistoryRetention& keep) {
    std::lock_guard lock(streams_mu_);
    Stream& s = stream_locked(topic);
    ++s.top.offset;
    if (keep.max_count > 0) s.kept.push_back({s.top.offset, now, std::string{body}});
    while (s.kept.size() > keep.max_count) s.kept.pop_front();
    if (keep.max_age.count() > 0)
        while (!s.kept.empty() && s.kept.front().at < now - keep.max_age) s.kept.pop_front();
    return s.top;
}

WSGATE_INLINE StreamRead InMemoryConnectionStore::read_locked(const Stream& s, std::uint64_t after, std::size_t limit,
                                                             TimePoint not_before, bool from_end) {
    StreamRead out;
    out.top = s.top;
    // Kept publications are in offset order and so in append order: the first one young enough
    // starts what is retained.
    auto first = std::find_if(s.kept.begin(), s.kept.end(), [&](const StoredPublication& p) { return p.at >= not_before; });
    out.first_retained = first == s.kept.end() ? s.top.offset + 1 : first->offset;
    if (limit == 0) return out;
    auto begin = std::find_if(first, s.kept.end(), [&](const StoredPublication& p) { return p.offset > after; });
    const auto available = static_cast<std::size_t>(std::distance(begin, s.kept.end()));
    if (from_end && available > limit) begin += static_cast<std::ptrdiff_t>(available - limit);
    for (auto it = begin; it != s.kept.end() && out.publications.size() < limit; ++it) out.publications.push_back(*it);
    return out;
}

WSGATE_INLINE StreamRead InMemoryConnectionStore::read_stream(const std::string& topic, std::uint64_t after,
                                                             std::size_t limit, TimePoint not_before) {
    std::lock_guard lock(streams_mu_);
    auto it = streams_.find(topic);
    return it == streams_.end() ? StreamRead{} : read_locked(it->second, after, limit, not_before, false);
}

WSGATE_INLINE StreamRead InMemoryConnectionStore::latest(const std::string& topic, std::size_t limit, TimePoint not_before) {
    std::lock_guard lock(streams_mu_);
    auto it = streams_.find(topic);
    return it == streams_.end() ? StreamRead{} : read_locked(it->second, 0, limit, not_before, true);
}

WSGATE_INLINE void InMemoryConnectionStore::save_cursor(const std::string& device_key, const std::string& topic,
                                                       const StreamPosition& p, TimePoint now, Duration keep_for) {
    std::lock_guard lock(streams_mu_);
    // Forgotten cursors go every 1024 saves, so the map holds about the live devices only.
    if (++cursor_saves_ % 1024 == 0) std::erase_if(cursors_, [&](const auto& kv) { return kv.second.expires_at <= now; });
    auto [it, created] = cursors_.try_emplace({device_key, topic}, Cursor{p, now + keep_for});
    if (created) return;
    Cursor& c = it->second;
    if (c.position.epoch != p.epoch || p.offset > c.position.offset) c.position = p;
    c.expires_at = now + keep_for;
}

WSGATE_INLINE std::optional<StreamPosition> InMemoryConnectionStore::load_cursor(const std::string& device_key,
                                                                                const std::string& topic, TimePoint now) {
    std::lock_guard lock(streams_mu_);
    auto it = cursors_.find({device_key, topic});
    if (it == cursors_.end() || it->second.expires_at <= now) return std::nullopt;
    return it->second.position;
}

WSGATE_INLINE std::vector<PresenceMember> InMemoryConnectionStore::presence(const std::string& topic) {
    std::shared_lock lock(mu_);
    std::vector<PresenceMember> out;
    auto it = by_topic_.find(topic);
    if (it == by_topic_.end()) return out;
    out.reserve(it->second.size());
    for (const auto& m : it->second) {
        const auto& r = m.entry->record;
        out.push_back({r.id, r.principal.kind, r.principal.user_id, r.principal.device_id, r.node_id});
    }
    return out;
}

}  // namespace wsgate
