#pragma once
/**
 * @file change_stream.hpp Turns a database change stream (DynamoDB Streams and the like) into
 * batched `METRICS_UPDATE` envelopes published to per-entity topics.
 *
 * Each change is published to `entity:<type>` and `entity:<type>:<id>`, so a client that
 * subscribed to `entity:orders:42` hears only about order 42, and one subscribed to
 * `entity:orders` hears about every order. Batches close at `max_batch_records` updates or when
 * the `batch_window` (timed by the injected Clock) has passed; the host calls `poll()`.
 */

#include <wsgate/audience.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/envelope.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsgate {

/// What happened to an item (DynamoDB's `eventName`).
enum class ChangeEventType { insert, modify, remove };

/// `INSERT`, `MODIFY` or `REMOVE`.
[[nodiscard]] std::string_view to_string(ChangeEventType t) noexcept;
/// Parses `INSERT` / `MODIFY` / `REMOVE` (exact, upper case as DynamoDB writes them).
[[nodiscard]] std::optional<ChangeEventType> change_event_type_from_string(std::string_view s) noexcept;

/// Why a change record was refused.
enum class change_stream_errc {
    malformed_json = 1,   ///< the text is not JSON
    not_an_object,        ///< the record is not a JSON object
    bad_event_name,       ///< `eventName` is missing or not INSERT / MODIFY / REMOVE
    bad_keys,             ///< `keys` is missing, not an object, or empty
    bad_image,            ///< `newImage` / `oldImage` present but not an object
    missing_image,        ///< INSERT/MODIFY without `newImage` (REMOVE may omit `oldImage`)
    bad_sequence_number,  ///< `sequenceNumber` is not a string of digits or a non-negative integer
    bad_timestamp,        ///< `approximateCreationDateTime` is not a number or ISO-8601 UTC string
    bad_entity_type,      ///< no entity type found, or it is empty or contains ':'
    bad_entity_id,        ///< no entity id could be derived from the keys
};

/// The error category of change_stream_errc (`wsgate.change_stream`).
const std::error_category& change_stream_category() noexcept;
inline std::error_code make_error_code(change_stream_errc e) noexcept {
    return {static_cast<int>(e), change_stream_category()};
}

}  // namespace wsgate

template <> struct std::is_error_code_enum<wsgate::change_stream_errc> : std::true_type {};

namespace wsgate {

/**
 * One item-level change from a database stream.
 *
 * `keys` identifies the item (its primary key attributes, plain JSON); `new_image` is the item
 * after the change (null for REMOVE), `old_image` before it (null for INSERT, or when the stream
 * does not carry old images). `sequence_number` is the stream's ordering token (a decimal
 * string; empty if unknown).
 *
 * @par Thread Safety Value type.
 */
struct ChangeRecord {
    ChangeEventType event_type = ChangeEventType::insert;
    std::string entity_type;   ///< e.g. `stream`, `orders`; never empty, never contains ':'
    nlohmann::json keys = nlohmann::json::object();
    nlohmann::json new_image;  ///< null when absent
    nlohmann::json old_image;  ///< null when absent
    std::string sequence_number;
    TimePoint timestamp{};     ///< when the change happened (approximate)
};

/// How `parse_change_record` reads the plain-JSON form. Every field has a working default.
struct ChangeRecordFormat {
    /// Image (or keys) attribute holding the entity type (`entity_type` by default).
    std::string entity_type_attribute = "entity_type";
    /// Used when no image carries `entity_type_attribute` (e.g. the table name). Empty: refuse.
    std::string default_entity_type;
};

/**
 * Builds a ChangeRecord from the plain JSON form
 * `{"eventName","keys","newImage","oldImage","sequenceNumber","approximateCreationDateTime"}`
 * (DynamoDB stream records with their attribute values already unmarshalled).
 *
 * - `eventName`: `INSERT` | `MODIFY` | `REMOVE`.
 * - `keys`: a non-empty object. `newImage` is required for INSERT and MODIFY; `oldImage` is
 *   optional; both must be objects (or null) when present.
 * - `sequenceNumber`: optional; a string of digits or a non-negative integer.
 * - `approximateCreationDateTime`: optional (missing = the epoch); a number of seconds since
 *   the Unix epoch as DynamoDB Streams sends it (fractions allowed), or of milliseconds when it
 *   is ≥ 1e11 and of microseconds when ≥ 1e14 (Kinesis precision settings; no date before
 *   year 5000 is that large in seconds), or an ISO-8601 UTC string `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
 * - entity type: `newImage[a]`, else `oldImage[a]`, else `keys[a]` (a =
 *   `format.entity_type_attribute`), else `format.default_entity_type`.
 *
 * @returns the record, or nullopt with `ec` set (a change_stream_errc). Never throws.
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::optional<ChangeRecord> parse_change_record(const nlohmann::json& j, std::error_code& ec,
                                                              const ChangeRecordFormat& format = {}) noexcept;
/// As above, from JSON text (malformed text gives change_stream_errc::malformed_json).
[[nodiscard]] std::optional<ChangeRecord> parse_change_record(std::string_view text, std::error_code& ec,
                                                              const ChangeRecordFormat& format = {}) noexcept;

/**
 * The entity id of `keys`: the value of `id_attribute` when `keys` has it, else the only value
 * when `keys` has one attribute, else every value in attribute-name order joined by `#`
 * (composite keys). Strings are used as they are, numbers and booleans in their JSON form.
 * Returns an empty string when no id can be derived (empty keys, or a null/object/array value).
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::string entity_id_of(const nlohmann::json& keys, std::string_view id_attribute = "entity_id");

/// `<prefix>:<type>`: the topic that hears every change of one entity type.
[[nodiscard]] std::string entity_type_topic(std::string_view entity_type, std::string_view prefix = "entity");
/// `<prefix>:<type>:<id>`: the topic that hears changes of one entity only.
[[nodiscard]] std::string entity_topic(std::string_view entity_type, std::string_view entity_id,
                                       std::string_view prefix = "entity");

/// Settings of ChangeStreamProcessor. Every field has a working default.
struct ChangeStreamSettings {
    std::size_t max_batch_records = 100;             ///< a batch closes at this many updates (≥ 1)
    Duration batch_window = std::chrono::seconds{5};  ///< ... or this long after its first record
    /// Merge repeated changes to one item within a batch (rules on ChangeStreamProcessor).
    bool coalesce = true;
    std::string envelope_type = "METRICS_UPDATE";  ///< the envelope's `type`
    std::string topic_prefix = "entity";           ///< topics are `<prefix>:<type>[:<id>]`
    std::string id_attribute = "entity_id";        ///< see entity_id_of
    bool publish_to_type_topic = true;    ///< publish to `<prefix>:<type>`
    bool publish_to_entity_topic = true;  ///< publish to `<prefix>:<type>:<id>`
    bool publish_to_everyone = false;     ///< also one envelope with every update to everyone
    /// If set, every audience requires this permission (Audience::requiring).
    std::string required_permission;
    bool include_keys = false;       ///< add `keys` and `entityType` to each update
    bool include_old_image = false;  ///< add `oldData` (the image before the change) when known

    /**
     * The seed 002 shape: each batch leaves as one envelope to every connection
     * (Audience::everyone(), no `topic`, clients need not subscribe) and to no topic.
     */
    [[nodiscard]] static ChangeStreamSettings everyone() {
        ChangeStreamSettings s;
        s.publish_to_everyone = true;
        s.publish_to_type_topic = false;
        s.publish_to_entity_topic = false;
        return s;
    }
};

/// Counters of a ChangeStreamProcessor (monotonic since construction).
struct ChangeStreamStats {
    std::uint64_t records_in = 0;          ///< records accepted by push()
    std::uint64_t records_rejected = 0;    ///< records refused by push() (bad entity type or id)
    std::uint64_t records_coalesced = 0;   ///< records merged into an earlier update of the same item
    std::uint64_t records_cancelled = 0;   ///< updates removed because INSERT was followed by REMOVE
    std::uint64_t records_stale = 0;       ///< records dropped as older than or equal to one already batched
    std::uint64_t updates_out = 0;         ///< updates emitted (each counted once, whatever its audiences)
    std::uint64_t batches = 0;             ///< batches emitted
    std::uint64_t envelopes = 0;           ///< sink calls
    std::uint64_t sink_failures = 0;       ///< sink calls that threw

    /// Prometheus text exposition (`wsgate_change_stream_*_total` counters), to append to
    /// Metrics::prometheus_text() on the server that runs the stream.
    [[nodiscard]] std::string prometheus_text() const;
};

/**
 * Batches change records and publishes them as `METRICS_UPDATE` envelopes
 * `{"type":"METRICS_UPDATE","topic":…,"updates":[{"eventType","timestamp","data"},…]}`
 * (`timestamp` in Unix milliseconds, `data` the new image, or the old image — or the keys when
 * there is none — for REMOVE).
 *
 * **Batching.** A batch opens with its first record and closes when it holds
 * `max_batch_records` updates (push() emits it at once) or when `batch_window` has passed since
 * it opened (poll() emits it), or on flush(). Each closed batch gives one envelope per audience:
 * `<prefix>:<type>` with that type's updates, `<prefix>:<type>:<id>` with that entity's updates,
 * and, if enabled, everyone with all of them (ChangeStreamSettings::everyone() sends only that one,
 * as seed 002's stream processor did). A client subscribed to both a type topic and one
 * of its entity topics hears that entity's changes twice; subscribe to one or the other.
 *
 * **Coalescing** (when `coalesce` is on; the item is identified by entity type and keys):
 * - INSERT then MODIFY → INSERT with the latest image;
 * - MODIFY then MODIFY → MODIFY with the latest image (and the first old image);
 * - MODIFY then REMOVE → REMOVE; INSERT then REMOVE → nothing (the update disappears);
 * - REMOVE then INSERT → MODIFY from the removed image to the new one;
 * - any other pair (not produced by a consistent stream) → the later record replaces the earlier.
 * The merged update keeps the batch position of the item's first change and takes the later
 * record's timestamp and sequence number. A record whose sequence number is not greater than
 * the one already batched for its item (a redelivered or reordered record) is dropped.
 *
 * **Time.** The injected Clock stamps when a batch opens and the envelopes' `timestamp`; no
 * thread runs inside. Call poll() at or after next_deadline() (or just every second).
 *
 * **Sink.** Called with no internal lock held, batches strictly in order; it may call push()
 * (a batch it fills is emitted after the current sink call returns). A sink that throws is
 * counted in `sink_failures` and the other envelopes still go out. Hosts wire it to
 * Gateway::publish.
 *
 * @code
 * wsgate::ChangeStreamProcessor streams{clock, [&](const wsgate::Envelope& e, const wsgate::Audience& a) {
 *     gateway.publish(e, a);
 * }};
 * std::error_code ec;
 * if (auto rec = wsgate::parse_change_record(json_text, ec)) streams.push(std::move(*rec));
 * streams.poll();  // from a timer
 * @endcode
 *
 * Destroying the processor drops the open batch: call flush() first to deliver it.
 *
 * @par Thread Safety Safe: every public method may be called from any thread.
 */
class ChangeStreamProcessor {
public:
    using Sink = std::function<void(const Envelope&, const Audience&)>;

    /// @throws std::invalid_argument if `clock` or `sink` is empty, `max_batch_records` is 0, or
    /// no audience is enabled (publish_to_type_topic, publish_to_entity_topic, publish_to_everyone).
    ChangeStreamProcessor(std::shared_ptr<const Clock> clock, Sink sink, ChangeStreamSettings settings = {});
    ~ChangeStreamProcessor();
    ChangeStreamProcessor(const ChangeStreamProcessor&) = delete;
    ChangeStreamProcessor& operator=(const ChangeStreamProcessor&) = delete;

    /**
     * Adds a record to the open batch (opening one at `clock.now()` if none is open); emits the
     * batch if it is now full.
     * @returns an empty code, or change_stream_errc::bad_entity_type / bad_entity_id (the record
     * is dropped and counted). Never throws.
     */
    std::error_code push(ChangeRecord record);
    /// Emits the open batch if its window has passed at `now`. @returns the number of batches emitted (0 or 1).
    std::size_t poll(TimePoint now);
    /// poll(clock.now()).
    std::size_t poll();
    /// Emits the open batch now, whatever its size and age. @returns batches emitted (0 or 1).
    std::size_t flush();

    /// When the open batch's window ends, or nullopt if no batch is open.
    [[nodiscard]] std::optional<TimePoint> next_deadline() const;
    /// Updates in the open batch (after coalescing).
    [[nodiscard]] std::size_t pending() const;
    [[nodiscard]] ChangeStreamStats stats() const;
    /// stats().prometheus_text() and the `wsgate_change_stream_pending_updates` gauge.
    [[nodiscard]] std::string prometheus_text() const;
    [[nodiscard]] const ChangeStreamSettings& settings() const noexcept { return settings_; }

private:
    struct Batch;

    void drain();

    std::shared_ptr<const Clock> clock_;
    Sink sink_;
    const ChangeStreamSettings settings_;

    mutable std::mutex mutex_;
    std::unique_ptr<Batch> open_;                // the open batch, or null
    std::deque<std::unique_ptr<Batch>> closed_;  // closed batches waiting for the sink, oldest first
    bool draining_ = false;                      // some thread is delivering closed_ to the sink
    ChangeStreamStats stats_;
};

}  // namespace wsgate
