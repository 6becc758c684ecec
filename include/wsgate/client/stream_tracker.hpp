#pragma once
/**
 * @file stream_tracker.hpp The client's side of stream recovery, without I/O: the position it
 * has reached on each subscribed topic, `since` on (re)subscribe, duplicate publications, and
 * what the subscribe acks say about recovery (docs/delivery.md).
 */

#include <wsgate/connection_store.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::client {

/**
 * What a subscribe ack said about resuming a topic's stream. Reported only for acks that carry
 * `recovered`, i.e. when the client sent `since` or the server found the device's cursor.
 * @par Thread Safety Value type.
 */
struct RecoveryInfo {
    std::string topic;
    /// True: every publication after the client's position follows the ack (`missed` of them),
    /// then live ones; nothing was lost. False: nothing is replayed; the host must resync its
    /// state (e.g. refetch it, or ask for `history`).
    bool recovered = false;
    std::size_t missed = 0;  ///< publications the server replays after the ack
    /// Why it did not recover: `epoch_changed`, `too_old`, `unknown_position`,
    /// `store_unavailable`; empty when recovered.
    std::string reason;
    std::string resumed_from;  ///< `since` or `cursor`
    /// The stream's position when the subscription took effect (the ack's `position`). After a
    /// failed recovery the tracker continues from here.
    StreamPosition position;
};

/**
 * Tracks the position a client has reached on each subscribed stream topic, from the
 * publications it receives (their top-level `topic`, `offset` and `epoch`) and the subscribe
 * acks (`position`, `recovered`, `missed`, `reason`).
 *
 * - subscribe_frame() is the subscribe frame with `since` once a position is known, so a
 *   resubscription after a reconnect asks the server for what was missed.
 * - inspect() says whether a received frame is a duplicate (an offset already seen in the
 *   current epoch, e.g. replayed and also received live) and decodes subscribe acks.
 *
 * Publications of concurrent publishers may arrive slightly out of order (12 before 11), so the
 * tracker keeps the offsets it has seen above a floor: every offset at or below the floor
 * counts as seen, and the floor follows the contiguous run of seen offsets. The position sent as
 * `since` is the floor, so a publication still missing below the highest one is replayed.
 * Offsets more than `window` below the highest seen count as seen (the floor is raised), which
 * bounds the memory per topic.
 *
 * An ack that carries `position` sets the position when the tracker has none for the topic yet
 * (a first subscription), or when recovery failed (the host resyncs to that point). The position
 * of a stream never published to is `{0, ""}`: its first publications are tracked from offset 0
 * in whatever epoch they bring. A publication in another unknown epoch starts the tracking at
 * that publication.
 *
 * Frames that are not JSON, or whose fields have unexpected types, are not tracked and count as
 * not duplicate; nothing here throws on received text.
 *
 * @code
 * wsgate::client::StreamTracker t;
 * t.subscribe("events");
 * socket.send(t.subscribe_frame("events"));      // {"type":"subscribe","topic":"events"}
 * auto r = t.inspect(frame);                       // for every received frame
 * if (r.recovery && !r.recovery->recovered) resync(r.recovery->topic);
 * if (!r.duplicate) app.handle(frame);
 * socket.send(t.subscribe_frame("events"));      // after a reconnect: with "since"
 * @endcode
 * @par Thread Safety Safe: every public method locks.
 */
class StreamTracker {
public:
    /// What inspect() found in one received frame.
    struct Inspection {
        /// A publication whose offset was already seen in its epoch: drop it.
        bool duplicate = false;
        /// Set for a subscribe ack that reports on recovery.
        std::optional<RecoveryInfo> recovery;
    };

    /// @param window how far below the highest seen offset out-of-order publications are still
    /// told apart from duplicates (at least 1).
    explicit StreamTracker(std::size_t window = 1024);
    StreamTracker(const StreamTracker&) = delete;
    StreamTracker& operator=(const StreamTracker&) = delete;

    /// Starts tracking `topic` (no position until a publication or ack brings one).
    void subscribe(const std::string& topic);
    /// Stops tracking `topic` and forgets its position.
    void unsubscribe(const std::string& topic);

    /// Looks at one received frame: updates positions, tells duplicates, decodes subscribe acks.
    Inspection inspect(std::string_view frame);

    /// `{"type":"subscribe","topic":T}`, with `"since":{"offset":N,"epoch":"E"}` when a position
    /// on `topic` is known.
    [[nodiscard]] std::string subscribe_frame(std::string_view topic) const;
    /**
     * `frame` with `since` added when it is a subscribe frame (`"type":"subscribe"`, a string
     * `topic`) without `since` for a tracked topic whose position is known; else nullopt (send
     * it unchanged). Other members of the frame (e.g. `ref`) are kept.
     */
    [[nodiscard]] std::optional<std::string> with_since(std::string_view frame) const;

    /// The position reached on `topic` (every publication up to it was seen), or nullopt.
    [[nodiscard]] std::optional<StreamPosition> position(std::string_view topic) const;
    /// Publications recognised as duplicates since construction.
    [[nodiscard]] std::uint64_t duplicates() const;
    /// The tracked topics, in name order.
    [[nodiscard]] std::vector<std::string> topics() const;

private:
    struct Stream {
        bool known = false;           ///< an epoch and floor are set
        std::string epoch;
        std::uint64_t floor = 0;      ///< every offset <= floor was seen
        std::set<std::uint64_t> seen;  ///< offsets > floor seen (out of order)
    };
    /// Marks `offset` seen; false if it was seen already (a duplicate).
    bool see(Stream& s, std::uint64_t offset);
    /// Moves `s` to `p`: replaces it in another epoch, raises the floor in the same one.
    static void adopt(Stream& s, const StreamPosition& p);

    const std::size_t window_;
    mutable std::mutex mutex_;
    std::map<std::string, Stream, std::less<>> streams_;
    std::uint64_t duplicates_ = 0;
};

}  // namespace wsgate::client
