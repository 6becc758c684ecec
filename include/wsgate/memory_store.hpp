#pragma once
/** @file memory_store.hpp The default ConnectionStore: indexed, in-process, thread-safe. */

#include <wsgate/detail/config.hpp>
#include <wsgate/connection_store.hpp>

#include <deque>
#include <map>
#include <mutex>
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
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& topic, std::size_t max_topics) override;
    bool unsubscribe(const ConnectionId& id, const std::string& topic) override;
    [[nodiscard]] std::vector<std::string> topics_of(const ConnectionId& id) override;
    [[nodiscard]] std::vector<ConnectionId> subscribers(const std::string& topic) override;
    [[nodiscard]] std::vector<ConnectionId> connections_of_user(const std::string& user_id) override;
    [[nodiscard]] ScanPage scan(const std::string& cursor, std::size_t limit) override;
    std::vector<ConnectionRecord> expire(TimePoint now) override;
    [[nodiscard]] std::size_t count() override;
    [[nodiscard]] ResolvedAudience resolve(const Audience& a) override;
    void resolve_into(const Audience& a, ResolvedAudience& out) override;
    std::size_t remove_node(const std::string& node_id) override;
    void renew_lease(const std::string& node_id, TimePoint now, Duration lease) override;
    [[nodiscard]] bool holds_lease(const std::string& node_id, TimePoint now) override;
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override;

    /// Streams live as long as the process: each starts with a fresh random epoch, so positions
    /// from an earlier process are refused as `epoch_changed`.
    [[nodiscard]] bool supports_streams() const noexcept override { return true; }
    StreamPosition append(const std::string& topic, std::string_view body, TimePoint now,
                          const HistoryRetention& keep) override;
    [[nodiscard]] StreamRead read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                         TimePoint not_before) override;
    [[nodiscard]] StreamRead latest(const std::string& topic, std::size_t limit, TimePoint not_before) override;
    void save_cursor(const std::string& device_key, const std::string& topic, const StreamPosition& p, TimePoint now,
                     Duration keep_for) override;
    [[nodiscard]] std::optional<StreamPosition> load_cursor(const std::string& device_key, const std::string& topic,
                                                            TimePoint now) override;
    [[nodiscard]] std::vector<PresenceMember> presence(const std::string& topic) override;

private:
    /// One topic's stream: its position and the kept publications, oldest first.
    struct Stream {
        StreamPosition top;
        std::deque<StoredPublication> kept;
    };
    struct Cursor {
        StreamPosition position;
        TimePoint expires_at;
    };
    Stream& stream_locked(const std::string& topic);
    static StreamRead read_locked(const Stream& s, std::uint64_t after, std::size_t limit, TimePoint not_before,
                                  bool from_end);

    struct Entry;
    /// A topic's subscriber, in a contiguous list per topic. Only the entry: a copy of the id here
    /// would cost every subscription a string (and its heap block) on top of the record's.
    struct Member {
        Entry* entry;
    };
    struct Entry {
        ConnectionRecord record;  // record.topics is left empty; `topics` is the truth
        std::map<std::string, std::size_t, std::less<>> topics;  // topic → position in its member list
        std::multimap<TimePoint, Entry*>::iterator expiry;
    };
    using UserIndex = std::unordered_map<std::string, std::unordered_set<Entry*>>;
    void erase_locked(std::map<ConnectionId, Entry>::iterator it);
    void drop_member_locked(Entry& e, const std::string& topic, std::size_t pos);
    static void unindex_user(UserIndex& index, const std::string& key, Entry* e);
    [[nodiscard]] static ConnectionRecord snapshot(const Entry& e);

    std::shared_mutex mu_;
    std::map<ConnectionId, Entry> by_id_;  // ordered: scan() cursors are ids; nodes are stable
    std::unordered_map<std::string, std::vector<Member>> by_topic_;
    UserIndex by_user_;
    UserIndex by_node_;  // node id → its records (remove_node, reaping)
    std::unordered_map<std::string, TimePoint> leases_;  // node id → lease deadline
    std::multimap<TimePoint, Entry*> by_expiry_;

    std::mutex streams_mu_;  // streams and cursors: independent of the records' lock
    std::unordered_map<std::string, Stream> streams_;
    std::map<std::pair<std::string, std::string>, Cursor> cursors_;  // (device key, topic)
    std::uint64_t cursor_saves_ = 0;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/memory_store-inl.hpp>
#endif
