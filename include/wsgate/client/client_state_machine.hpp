#pragma once
/**
 * @file client_state_machine.hpp The reconnecting client's logic, without I/O: states, backoff,
 * heartbeat, suspend/resume, outbound queue, re-subscription and the polling fallback.
 */

#include <wsgate/client/heartbeat.hpp>
#include <wsgate/client/reconnect_policy.hpp>
#include <wsgate/clock.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::client {

/// The five connection states.
enum class ConnectionState {
    disconnected,  ///< idle: not started, closed by the host, or given up (see should_poll())
    connecting,    ///< the first socket after connect() is opening
    connected,     ///< the socket is open
    reconnecting,  ///< the connection was lost: waiting for the backoff timer, or a new socket is opening
    error,         ///< the socket reported an error: waiting for the backoff timer
};
/// `disconnected`, `connecting`, `connected`, `reconnecting`, `error`.
[[nodiscard]] std::string_view to_string(ConnectionState s) noexcept;

/**
 * Something the host must do, returned by every event of ClientStateMachine, in order.
 * @par Thread Safety Value type.
 */
struct Action {
    enum class Kind {
        open_socket,    ///< open a new socket (the host knows the URL and token)
        close_socket,   ///< close the current socket with `close_code` and `text` as reason; forget it
        send_frame,     ///< send `text` as a text frame on the open socket
        deliver,        ///< hand the received message `text` to the application
        start_polling,  ///< live updates are off: start polling the HTTP API
        stop_polling,   ///< live updates are back: stop polling
    };
    Kind kind = Kind::open_socket;
    std::string text;              ///< send_frame / deliver: the message; close_socket: the reason
    std::uint16_t close_code = 0;  ///< close_socket only

    static Action open_socket() { return {Kind::open_socket, {}, 0}; }
    static Action close_socket(std::uint16_t code, std::string reason) {
        return {Kind::close_socket, std::move(reason), code};
    }
    static Action send_frame(std::string text) { return {Kind::send_frame, std::move(text), 0}; }
    static Action deliver(std::string text) { return {Kind::deliver, std::move(text), 0}; }
    static Action start_polling() { return {Kind::start_polling, {}, 0}; }
    static Action stop_polling() { return {Kind::stop_polling, {}, 0}; }
    bool operator==(const Action&) const = default;
};
using Actions = std::vector<Action>;

/// Settings of ClientStateMachine; every field has a working default.
struct ClientSettings {
    ReconnectSettings reconnect;      ///< backoff, jitter and attempt cap
    HeartbeatSettings heartbeat;      ///< ping interval and pong timeout
    bool heartbeat_enabled = true;
    bool auto_reconnect = true;       ///< false: a lost connection goes straight to `disconnected` (polling)
    /// A socket that has not opened after this long counts as a failed attempt; 0 = wait forever.
    Duration open_timeout = std::chrono::seconds{10};
    /// Outbound queue bound while not connected. Overflow drops the OLDEST message (counted in
    /// dropped()); 0 drops everything sent while not connected.
    std::size_t max_queued = 256;
    /// Server close codes after which reconnecting is pointless (policy violation: bad token).
    std::vector<std::uint16_t> no_reconnect_codes{1008};
    std::string ping_frame = R"({"type":"ping"})";  ///< the heartbeat frame
    std::string pong_type = "pong";                 ///< a message whose `type` is this is a pong
    std::uint16_t heartbeat_close_code = 4000;      ///< close code when the pong is late (3000–4999 are free)
    /// After giving up at the attempt cap, keep trying one socket this often (plus jitter) until
    /// one opens: the client returns to live by itself once the server is back. 0 = stay given up
    /// until connect() or retry(). Not after a no_reconnect_codes close or with auto_reconnect off.
    Duration probe_interval = std::chrono::seconds{60};
    /// true: an opened socket keeps the attempt count until the host calls ready() (e.g. once its
    /// subscriptions are acknowledged), so a connection lost before that counts as one more failed
    /// attempt and the backoff keeps growing. false: on_open() resets the count.
    bool require_ready = false;
};

/**
 * A snapshot of ClientStateMachine for a status display, e.g. "Reconnecting in 4 s (attempt
 * 3/10)" or "Offline — next check in 45 s".
 * @par Thread Safety Value type.
 */
struct ClientStatus {
    ConnectionState state = ConnectionState::disconnected;
    /// Reconnect attempts since the last established connection: the attempt scheduled or under
    /// way, counted from 1 (0 for the first connect and once established; `max_attempts` after
    /// giving up).
    std::size_t attempt = 0;
    std::size_t max_attempts = 0;  ///< the cap, ReconnectSettings::max_attempts
    /// When the next attempt (or probe) opens a socket, in the machine's Clock; nullopt if none is
    /// scheduled (connected, opening, given up without probing, closed by the host).
    std::optional<TimePoint> next_attempt_at;
    /// `next_attempt_at` minus the time of the snapshot, never negative.
    std::optional<Duration> next_attempt_in;
    bool gave_up = false;    ///< the backoff gave up (attempt cap, no-reconnect close code, auto_reconnect off)
    bool probing = false;    ///< gave up at the cap, and trying one socket every probe_interval
    bool suspended = false;  ///< suspend() is in effect (timers paused)
    bool polling = false;    ///< should_poll()
    std::optional<std::uint16_t> last_close_code;  ///< the code of the last on_close(), if any
    bool operator==(const ClientStatus&) const = default;
};

/**
 * The reconnecting WebSocket client as a pure state machine: the host feeds it socket events
 * and timer ticks, and carries out the Actions it returns. Time comes from the injected Clock.
 *
 * Transitions (anything not listed is ignored and counted in unexpected_events()):
 * | state (socket) | event | → state, actions |
 * |---|---|---|
 * | disconnected | connect() | connecting; open_socket (attempts reset) |
 * | connecting, reconnecting (opening) | on_open() | connected; re-subscribe all topics, then flush the queue in order |
 * | connecting, reconnecting (opening) | on_close(), open timeout | reconnecting (timer) or disconnected (gave up) |
 * | connecting, connected, reconnecting (opening) | on_error() | error (timer) or disconnected (gave up); close_socket |
 * | connected | on_close(code) | reconnecting (timer); disconnected if `code` is in no_reconnect_codes |
 * | connected | tick(): ping due / pong late | send_frame(ping) / close_socket, reconnecting |
 * | reconnecting, error (timer) | tick() at the timer, resume(), connect(), retry() | reconnecting (opening); open_socket |
 * | disconnected (gave up, probing) | tick() at the probe time, resume() | reconnecting (opening); open_socket |
 * | disconnected | retry() | as connect() |
 * | connecting, connected, reconnecting (opening) | abandon() | error (timer) or disconnected (gave up); close_socket |
 * | any | close() | disconnected; close_socket if a socket is open or opening |
 *
 * Backoff follows ReconnectPolicy; after `max_attempts` failed attempts the machine gives up
 * (`disconnected`, should_poll() true). With `probe_interval` (60 s by default) it then tries
 * one socket every `probe_interval` + jitter (status().probing, reconnect_at()): a probe that
 * opens is an ordinary connection again, one that fails waits for the next probe. connect() and
 * retry() start over with a fresh budget at once. A successful open resets the count (with
 * `require_ready`: ready() does).
 *
 * **Polling.** should_poll() is true while reconnecting, in error, and when disconnected after
 * giving up; false when connected, during the first connect, and after the host's close(). Its
 * changes are also returned as start_polling / stop_polling actions.
 *
 * **Suspend/resume** (hidden tab, backgrounded app): suspend() pauses the heartbeat and the
 * reconnect timer (the socket, if any, is kept). resume() pings at once when connected (a dead
 * connection is found within the pong timeout) and reconnects at once when waiting to.
 *
 * **Outbound queue.** send() while not connected queues the message (oldest dropped beyond
 * `max_queued`); on (re)connect, the subscribe frames of every topic go first, then the queue in
 * order. subscribe()/unsubscribe() are remembered, not queued: only the final set is sent.
 *
 * @code
 * wsgate::client::ClientStateMachine m{clock};
 * for (const auto& a : m.connect()) host.apply(a);     // open_socket
 * for (const auto& a : m.on_open()) host.apply(a);     // after the socket opened
 * for (const auto& a : m.tick(clock->now())) host.apply(a);  // from a timer, at next_deadline()
 * @endcode
 *
 * @par Thread Safety Safe: every public method locks; Actions are returned, never called back,
 * so the host applies them in the order its calls returned.
 */
class ClientStateMachine {
public:
    /// @throws std::invalid_argument if `clock` is null or a setting is invalid.
    explicit ClientStateMachine(std::shared_ptr<const Clock> clock, ClientSettings settings = {},
                                RandomSource random = {});
    ClientStateMachine(const ClientStateMachine&) = delete;
    ClientStateMachine& operator=(const ClientStateMachine&) = delete;

    // ---- host commands ----
    /// Starts connecting (from `disconnected`), or reconnects at once (while waiting for the timer).
    Actions connect();
    /**
     * A manual retry ("Retry now"): resets the backoff to attempt 0 and opens a socket at once,
     * from `disconnected` (given up, probing or closed by the host), `reconnecting` or `error`.
     * While a socket is opening only the count is reset; connected or connecting: nothing.
     */
    Actions retry();
    /// Stops: closes the socket, stops reconnecting and polling. The queue and topics are kept.
    Actions close();
    /// Sends `text` now if connected, else queues it.
    Actions send(std::string text);
    /// Adds `topic` to the subscriptions (sent now if connected, and after every reconnect).
    Actions subscribe(const std::string& topic);
    /// Removes `topic` (an unsubscribe frame is sent now if connected).
    Actions unsubscribe(const std::string& topic);
    /// The page or app went to the background.
    Actions suspend();
    /// The page or app is back.
    Actions resume();

    // ---- socket events ----
    Actions on_open();
    Actions on_close(std::uint16_t code);
    Actions on_error();
    /**
     * The host gives up on the current socket because a deadline it enforces passed (a token
     * request, a subscribe ack): close_socket(`close_code`, `reason`), then as a socket error
     * (`error` and backoff, or giving up). Ignored (counted) without a socket.
     */
    Actions abandon(std::uint16_t close_code, std::string reason);
    /// With `require_ready`: the open connection is established (e.g. its subscriptions were
    /// acknowledged), so the attempt count is reset. Ignored when not connected or already ready.
    Actions ready();
    /// A received text message: pongs are consumed, everything else comes back as `deliver`.
    Actions on_message(std::string_view text);

    // ---- time ----
    /// Fires what is due at `now`: ping, pong timeout, open timeout, reconnect timer.
    Actions tick(TimePoint now);
    /// tick(clock.now()).
    Actions tick();

    // ---- observers ----
    [[nodiscard]] ConnectionState state() const;
    [[nodiscard]] bool should_poll() const;
    [[nodiscard]] bool suspended() const;
    /// True after the machine gave up (attempt cap, no-reconnect close code, auto_reconnect off).
    [[nodiscard]] bool gave_up() const;
    /// Reconnect attempts since the last successful open.
    [[nodiscard]] std::size_t attempts() const;
    /// When the pending reconnect (or probe, after giving up) fires, for a countdown; or nullopt.
    [[nodiscard]] std::optional<TimePoint> reconnect_at() const;
    /// Everything a status display needs, taken at once (`next_attempt_in` against the clock's now).
    [[nodiscard]] ClientStatus status() const;
    /// When tick() next has something to do, or nullopt.
    [[nodiscard]] std::optional<TimePoint> next_deadline() const;
    /// The code of the last on_close(), if any.
    [[nodiscard]] std::optional<std::uint16_t> last_close_code() const;
    [[nodiscard]] std::size_t queued() const;
    /// Messages dropped by the queue bound since construction.
    [[nodiscard]] std::uint64_t dropped() const;
    /// Events that made no sense in the state they arrived in (ignored) since construction.
    [[nodiscard]] std::uint64_t unexpected_events() const;
    /// The subscribed topics, in subscription order.
    [[nodiscard]] std::vector<std::string> subscriptions() const;
    [[nodiscard]] const ClientSettings& settings() const noexcept { return settings_; }

    /// `{"type":"subscribe","topic":…}` / `{"type":"unsubscribe","topic":…}`.
    [[nodiscard]] static std::string subscribe_frame(std::string_view topic);
    [[nodiscard]] static std::string unsubscribe_frame(std::string_view topic);

private:
    enum class Socket { none, opening, open };

    Actions start(bool fresh_budget);
    void set_polling(bool on, Actions& out);
    void open_locked(TimePoint now, Actions& out);
    void restart_locked(TimePoint now, Actions& out);
    void lost_locked(TimePoint now, bool error, std::optional<std::uint16_t> code, Actions& out);
    void tick_locked(TimePoint now, Actions& out);
    [[nodiscard]] bool is_pong(std::string_view text) const;

    std::shared_ptr<const Clock> clock_;
    const ClientSettings settings_;

    mutable std::mutex mutex_;
    ReconnectPolicy policy_;
    Heartbeat heartbeat_;
    ConnectionState state_ = ConnectionState::disconnected;
    Socket socket_ = Socket::none;
    TimePoint opening_since_{};
    std::optional<TimePoint> reconnect_at_;
    std::optional<std::uint16_t> last_close_code_;
    bool suspended_ = false;
    bool polling_ = false;
    bool gave_up_ = false;
    bool probing_ = false;
    bool ready_ = false;  // with require_ready: ready() was called for the open socket
    std::deque<std::string> queue_;
    std::vector<std::string> topics_;
    std::uint64_t dropped_ = 0;
    std::uint64_t unexpected_ = 0;
};

}  // namespace wsgate::client
