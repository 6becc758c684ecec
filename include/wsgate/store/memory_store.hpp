#pragma once
/** @file memory_store.hpp The default ConnectionStore: indexed, in-process, thread-safe. */

#include <wsgate/connection_store.hpp>

#include <map>
#include <set>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

namespace wsgate {

/**
 * In-memory ConnectionStore with topic, user and expiry indexes: topic and user lookups and
 * expiry cost grows with their result, never with all connections.
 * @par Thread Safety Safe (one reader-writer lock).
 */
class InMemoryConnectionStore final : public ConnectionStore {
public:
    InMemoryConnectionStore() = default;

    void put(const ConnectionRecord& r) override;
    [[nodiscard]] std::optional<ConnectionRecord> get(const ConnectionId& id) override;
    bool remove(const ConnectionId& id) override;
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry = {}) override;
    bool subscribe(const ConnectionId& id, const std::string& topic) override;
    bool unsubscribe(const ConnectionId& id, const std::string& topic) override;
    [[nodiscard]] std::vector<std::string> topics_of(const ConnectionId& id) override;
    [[nodiscard]] std::vector<ConnectionId> subscribers(const std::string& topic) override;
    [[nodiscard]] std::vector<ConnectionId> connections_of_user(const std::string& user_id) override;
    [[nodiscard]] ScanPage scan(const std::string& cursor, std::size_t limit) override;
    std::vector<ConnectionRecord> expire(TimePoint now) override;
    [[nodiscard]] std::size_t count() override;
    [[nodiscard]] ResolvedAudience resolve(const Audience& a) override;

private:
    struct Entry {
        ConnectionRecord record;  // record.topics is left empty; `topics` is the truth
        std::set<std::string> topics;
        std::multimap<TimePoint, Entry*>::iterator expiry;
    };
    using Index = std::unordered_map<std::string, std::unordered_set<Entry*>>;
    void erase_locked(std::map<ConnectionId, Entry>::iterator it);
    static void unindex(Index& index, const std::string& key, Entry* e);
    [[nodiscard]] ConnectionRecord snapshot(const Entry& e) const;

    std::shared_mutex mu_;
    std::map<ConnectionId, Entry> by_id_;  // ordered: scan() cursors are ids; nodes are stable
    Index by_topic_;
    Index by_user_;
    std::multimap<TimePoint, Entry*> by_expiry_;
};

}  // namespace wsgate
