#pragma once
// DynamoDbConnectionStore's state and the item layout shared by its connection and stream parts
// (no API promise). The layout is documented in include/wsgate/dynamodb/dynamodb_store.hpp.

#include "client.hpp"

#include <wsgate/dynamodb/dynamodb_store.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

struct DynamoDbConnectionStore::Impl {
    DynamoDbStoreSettings settings;
    dynamodb_detail::Client client;

    explicit Impl(DynamoDbStoreSettings s);

    using Json = dynamodb_detail::Json;

    // ---- keys ------------------------------------------------------------------------------
    /// `prefix` + `value`, or `prefix` + `=` + SHA-256(value) for a value that is empty, longer
    /// than 1000 bytes (DynamoDB caps sort keys at 1024) or starts with `=` (so no plain value
    /// can collide with a digest). The full value is always kept in an attribute too.
    static std::string key(std::string_view prefix, std::string_view value);
    static Json item_key(const std::string& pk, const std::string& sk);
    static Json meta_key(const ConnectionId& id) { return item_key(key("c#", id), "meta"); }
    /// The history item's sort key: `h#` and the offset in 20 digits, so they sort numerically.
    static std::string history_sk(std::uint64_t offset);

    // ---- time ------------------------------------------------------------------------------
    [[nodiscard]] std::int64_t clock_ms() const { return to_unix_ms(settings.clock->now()); }
    /// The `ttl` attribute for something that ends at `ms`: whole seconds, rounded up, plus the grace.
    [[nodiscard]] std::int64_t ttl_for(std::int64_t ms) const;
    /// True for a meta item whose `exp` is still ahead of the store's clock.
    [[nodiscard]] bool live(const Json& meta) const;

    // ---- connections -----------------------------------------------------------------------
    /// The record a meta item holds, with `topics`. @throws StoreError(corrupt) if unreadable.
    [[nodiscard]] ConnectionRecord record_of(const Json& meta, std::vector<std::string> topics) const;

    struct Partition {
        Json meta;  ///< null when the connection has no meta item
        std::vector<std::string> topics;
    };
    /// Every item under `c#<id>` (one strongly consistent Query, paginated).
    Partition read_partition(const ConnectionId& id);

    /// The attributes resolve()/presence() need from a meta item.
    static constexpr const char* meta_projection = "#pk, #id, #exp, #uid, #dev, #perms, #kind, #node";
    /**
     * The live meta items of the connections an index partition `index_pk` lists, in its order;
     * index items whose connection is gone are deleted (hints verified against the truth).
     */
    std::vector<Json> members(const std::string& index_pk);
    /// The meta items of `ids` (BatchGetItem), by id; absent ones are missing from the map.
    std::map<std::string, Json> metas_of(const std::vector<std::string>& ids);

    /**
     * Deletes the meta items of `ids` whose condition holds (`condition` over `values`), with
     * ReturnValues ALL_OLD: each item goes to exactly one caller. Returns the old items won.
     */
    std::vector<Json> claim(const std::vector<std::string>& ids, const std::string& condition, const Json& values);
    /// After claim(): deletes what the claimed connections left (subscriptions, topic members,
    /// user and node index items). Returns each one's topics, sorted, in `olds` order.
    std::vector<std::vector<std::string>> clean_up(const std::vector<Json>& olds);
};

}  // namespace wsgate
