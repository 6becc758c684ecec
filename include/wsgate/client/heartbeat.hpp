#pragma once
/** @file heartbeat.hpp Application-level ping/pong liveness check for clients. */

#include <wsgate/clock.hpp>

#include <optional>

namespace wsgate::client {

/// Heartbeat settings; by default a ping every 30 s, answered by a pong within 5 s.
struct HeartbeatSettings {
    Duration interval = std::chrono::seconds{30};  ///< between pings (> 0)
    Duration timeout = std::chrono::seconds{5};    ///< a pong must arrive this soon after a ping (> 0)
};

/**
 * Decides when to send a ping and when a missing pong means the connection is dead.
 *
 * start() at connect; tick(now) says `send_ping` when a ping is due and `timed_out` when the
 * pong to the last ping is late; on_pong() clears the wait. pause()/resume() stop and restart it
 * (a hidden tab, a backgrounded app): while paused nothing is due, and resume(now) asks for a
 * ping at once so a connection that died meanwhile is found quickly.
 *
 * @par Thread Safety Not thread-safe (owned by one ClientStateMachine or one thread).
 */
class Heartbeat {
public:
    enum class Due {
        nothing,    ///< nothing to do now
        send_ping,  ///< send a ping now (the pong deadline starts now)
        timed_out,  ///< the pong is late: the connection is dead
    };

    /// @throws std::invalid_argument if `interval` or `timeout` is not positive.
    explicit Heartbeat(HeartbeatSettings settings = {});

    /// Starts (or restarts) at `now`: first ping at `now + interval`.
    void start(TimePoint now) noexcept;
    /// Stops; nothing is due until start().
    void stop() noexcept;
    /// Pauses a running heartbeat (no ping, no timeout) until resume().
    void pause() noexcept;
    /// Resumes a paused heartbeat: a ping is due at once. No effect if not paused.
    void resume(TimePoint now) noexcept;
    /// What is due at `now`. Returning `send_ping` records the ping as sent at `now`.
    [[nodiscard]] Due tick(TimePoint now) noexcept;
    /// A pong arrived: clears the wait. Unsolicited pongs are ignored.
    void on_pong(TimePoint now) noexcept;

    [[nodiscard]] bool running() const noexcept { return running_; }
    [[nodiscard]] bool paused() const noexcept { return paused_; }
    [[nodiscard]] bool awaiting_pong() const noexcept { return pong_deadline_.has_value(); }
    /// The next time tick() may return something, or nullopt when stopped or paused.
    [[nodiscard]] std::optional<TimePoint> next_deadline() const noexcept;
    /// The round trip of the last answered ping.
    [[nodiscard]] std::optional<Duration> last_round_trip() const noexcept { return last_rtt_; }
    [[nodiscard]] const HeartbeatSettings& settings() const noexcept { return settings_; }

private:
    HeartbeatSettings settings_;
    bool running_ = false;
    bool paused_ = false;
    TimePoint next_ping_{};
    TimePoint ping_sent_{};
    std::optional<TimePoint> pong_deadline_;
    std::optional<Duration> last_rtt_;
};

}  // namespace wsgate::client
