#pragma once
/**
 * @file dynamodb_store.hpp A ConnectionStore in one DynamoDB table (`wsgate::dynamodb`), shared by
 * every process that names the table: API Gateway Lambdas, or self-hosted nodes.
 */

#include <wsgate/aws/http_client.hpp>
#include <wsgate/aws/sigv4.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection_store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace wsgate {

/**
 * How DynamoDbConnectionStore retries a throttled or failed request: up to `max_attempts` tries
 * in all, sleeping a uniformly random time in [0, min(cap, base·2^(n−1))] before the n-th retry
 * ("full jitter"). Retried: ProvisionedThroughputExceededException, ThrottlingException,
 * RequestLimitExceeded, any HTTP 5xx and no answer at all; BatchGetItem/BatchWriteItem also retry
 * their unprocessed keys and items with the same backoff.
 */
struct DynamoDbRetry {
    int max_attempts = 8;
    Duration base{25};
    Duration cap{1000};
};

/// Settings of DynamoDbConnectionStore and create_dynamodb_table(); only `table` is required.
struct DynamoDbStoreSettings {
    std::string table;  ///< the table's name (3–255 characters of `[A-Za-z0-9_.-]`)
    /// Empty: AWS_REGION, else AWS_DEFAULT_REGION, else `us-east-1`.
    std::string region;
    /// Empty: `https://dynamodb.<region>.amazonaws.com`; a local server: `http://127.0.0.1:8000`.
    /// Plain `http://` is accepted only for a loopback host (127.0.0.0/8, `localhost`, `[::1]`)
    /// unless `allow_plain_http` is set.
    std::string endpoint;
    /// Lets `endpoint` be a plain `http://` URL on another host (DynamoDB Local in a container
    /// network, say). Off by default: over plain HTTP the connection table, with every principal
    /// and permission, crosses the network readable by anyone on the path.
    bool allow_plain_http = false;
    /// nullopt: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read for every
    /// request, so credentials a Lambda runtime rotates are picked up.
    std::optional<aws::Credentials> credentials;
    /// nullptr: an aws::CurlHttpClient with its default settings.
    std::shared_ptr<aws::HttpClient> http;
    DynamoDbRetry retry;
    /// The `ttl` attribute (epoch seconds, for DynamoDB's TTL deletion) is ceil(expires_at in
    /// seconds) + this grace, so TTL never deletes a record before a sweep could hand it back.
    Duration ttl_grace = std::chrono::hours{1};
    /// nullptr: SystemClock. Reads treat a record whose expires_at <= clock->now() as absent
    /// (DynamoDB's TTL deletes up to days late).
    std::shared_ptr<Clock> clock;
};

/// Request counters of a DynamoDbConnectionStore (a snapshot).
struct DynamoDbStats {
    std::uint64_t requests = 0;             ///< HTTP requests sent, retries included
    std::uint64_t throttled_retries = 0;    ///< requests repeated after throttling, 5xx or no answer
    std::uint64_t unprocessed_retries = 0;  ///< batch calls repeated for UnprocessedKeys/UnprocessedItems
    std::uint64_t errors = 0;               ///< calls that ended in StoreError
};

/**
 * ConnectionStore in one DynamoDB table (key `pk` S HASH, `sk` S RANGE; TTL attribute `ttl`),
 * over the DynamoDB JSON API signed with SigV4: no AWS SDK. Correct when many processes share the
 * table (shared() is true): every race the contract names is settled by a conditional write.
 *
 * Layout (one item each; `<x>` longer than 1000 bytes, empty, or starting with `=` is written as
 * `=` + its SHA-256 in hex, the full value kept in an attribute):
 * | item | pk | sk |
 * |---|---|---|
 * | connection (the truth) | `c#<id>` | `meta` |
 * | its subscription | `c#<id>` | `t#<topic>` |
 * | topic member | `t#<topic>` | `c#<id>` |
 * | user index | `u#<user>` | `c#<id>` |
 * | node index | `n#<node>` | `c#<id>` |
 * | node lease | `leases` | `<node>` |
 * | stream top | `s#<topic>` | `top` |
 * | stream history | `s#<topic>` | `h#<offset, 20 digits>` |
 * | device cursor | `d#<device key>` | `<topic>` |
 *
 * Index items are hints: every read checks them against the connection's `meta` item
 * (BatchGetItem, strongly consistent) and deletes the dangling ones it meets. remove() and
 * expire() are conditional DeleteItems, so exactly one caller wins a record. subscribe_capped()
 * reserves a slot in the meta item's subscription counter with a conditional UpdateItem before it
 * writes, so racing calls, from any process, never take a connection past its cap. append()
 * advances the stream top with a conditional UpdateItem after writing the previous publication to
 * the history, so a reader never sees offset N+1 without N (no transactions needed, so it runs on
 * DynamoDB Local and dynalite too). docs/stores.md counts the requests of each operation.
 *
 * Times (leases, cursors, history age) are the `now` the caller passes, except liveness on read,
 * which is `settings.clock`.
 *
 * Errors: StoreError naming the operation, DynamoDB's error type and message, after the retries
 * of DynamoDbRetry (`unavailable` for throttling, 5xx and no answer; `invalid_argument` for a
 * ValidationException; `io_error` otherwise).
 *
 * @code
 * wsgate::DynamoDbStoreSettings s;
 * s.table = "wsgate-connections";                 // region and credentials from the Lambda environment
 * auto store = std::make_shared<wsgate::DynamoDbConnectionStore>(s);
 * @endcode
 * @par Thread Safety Safe: no state but the settings and atomic counters; the HTTP client is shared.
 */
class DynamoDbConnectionStore final : public ConnectionStore {
public:
    /// Sends nothing: construction never blocks on the network.
    /// @throws std::invalid_argument if `settings.table` is empty, the endpoint is not a URL, or it
    /// is plain `http://` to a host that is not loopback without `allow_plain_http`.
    explicit DynamoDbConnectionStore(DynamoDbStoreSettings settings);
    ~DynamoDbConnectionStore() override;

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
    /// A Scan of the table; the cursor is the last record's key, so pages stay stable.
    [[nodiscard]] ScanPage scan(const std::string& cursor, std::size_t limit) override;
    /// A Scan for meta items with `exp` <= `now`, each claimed by a conditional DeleteItem.
    std::vector<ConnectionRecord> expire(TimePoint now) override;
    /// A counting Scan of the live meta items (it reads the whole table: for monitoring, not per request).
    [[nodiscard]] std::size_t count() override;
    /// One Query per page of the topic (or user) index and one BatchGetItem per 100 members.
    [[nodiscard]] ResolvedAudience resolve(const Audience& a) override;
    [[nodiscard]] bool shared() const noexcept override { return true; }
    std::size_t remove_node(const std::string& node_id) override;
    void renew_lease(const std::string& node_id, TimePoint now, Duration lease) override;
    [[nodiscard]] bool holds_lease(const std::string& node_id, TimePoint now) override;
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override;

    [[nodiscard]] bool supports_streams() const noexcept override { return true; }
    StreamPosition append(const std::string& topic, std::string_view body, TimePoint now,
                          const HistoryRetention& keep) override;
    /// Age is judged from the front, as the Redis store does: every publication after the oldest
    /// one with `at` >= `not_before` is returned, so the publications returned never have a gap.
    [[nodiscard]] StreamRead read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                         TimePoint not_before) override;
    [[nodiscard]] StreamRead latest(const std::string& topic, std::size_t limit, TimePoint not_before) override;
    void save_cursor(const std::string& device_key, const std::string& topic, const StreamPosition& p, TimePoint now,
                     Duration keep_for) override;
    [[nodiscard]] std::optional<StreamPosition> load_cursor(const std::string& device_key, const std::string& topic,
                                                            TimePoint now) override;
    [[nodiscard]] std::vector<PresenceMember> presence(const std::string& topic) override;

    [[nodiscard]] DynamoDbStats stats() const noexcept;
    [[nodiscard]] const DynamoDbStoreSettings& settings() const noexcept;

    struct Impl;  ///< opaque: defined in the library's sources

private:
    std::unique_ptr<Impl> impl_;
};

/// What create_dynamodb_table() did.
struct DynamoDbTableSetup {
    bool created = false;      ///< false: the table existed already
    bool ttl_enabled = false;  ///< TTL deletion on `ttl` is on (or was already)
    std::string ttl_status;    ///< DynamoDB's TTL status, or why TTL could not be enabled
};

/**
 * Creates the table DynamoDbConnectionStore expects (`pk` S HASH, `sk` S RANGE, PAY_PER_REQUEST),
 * waits until it is ACTIVE, then turns on TTL deletion on `ttl` (UpdateTimeToLive). An existing
 * table is not an error (`created` false). A server without UpdateTimeToLive (dynalite) gives
 * `ttl_enabled` false and says so in `ttl_status`: the store stays correct without TTL, only
 * swept records leave nothing behind.
 * @throws StoreError if the table cannot be created or is not ACTIVE within `deadline`.
 * @par Thread Safety Safe.
 */
DynamoDbTableSetup create_dynamodb_table(const DynamoDbStoreSettings& settings,
                                         Duration deadline = std::chrono::minutes{2});

}  // namespace wsgate
