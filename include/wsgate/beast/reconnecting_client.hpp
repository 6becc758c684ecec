#pragma once
/**
 * @file reconnecting_client.hpp A WebSocket client that rides through server restarts: the
 * client state machine (include/wsgate/client/) driving the Beast client.
 */

#include <wsgate/beast/client.hpp>
#include <wsgate/client/client_state_machine.hpp>
#include <wsgate/client/message_dispatcher.hpp>
#include <wsgate/client/stream_tracker.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace wsgate::beast {

/**
 * Settings of ReconnectingClient; every field has a working default. Every step of an attempt
 * has a deadline, and a step that misses it fails the attempt (backoff goes on): nothing waits
 * forever. The constructor throws std::invalid_argument on a value that makes no sense.
 */
struct ReconnectingClientSettings {
    /// Backoff `min(max, initial·2^attempt) + jitter(0–1000 ms)`, 10 attempts, then a probe every
    /// 60 s (`probe_interval`), heartbeat 30 s / 5 s, bounded outbound queue, automatic
    /// re-subscription. `open_timeout` is 0 here because the per-step deadlines below bound an
    /// attempt; set it to cap the whole opening (token, TCP, handshake) as well.
    client::ClientSettings machine = [] {
        client::ClientSettings s;
        s.open_timeout = Duration{0};
        return s;
    }();
    /// Upgrade headers, subprotocols and limits of each socket.
    ClientSettings socket;
    /// How long the token provider may take (> 0, at most 24 h; as the other deadlines).
    std::chrono::milliseconds token_timeout{5000};
    /// Name resolution plus the TCP connect (> 0).
    std::chrono::milliseconds connect_timeout{5000};
    /// The WebSocket upgrade request and its response (> 0).
    std::chrono::milliseconds handshake_timeout{5000};
    /// How long each subscribe may wait for its ack (or error) from the server (≥ 0). A subscribe
    /// left unanswered counts as a failed attempt: the socket is closed (code
    /// `machine.heartbeat_close_code`) and the client reconnects with the backoff still growing,
    /// then re-subscribes everything (the client sets `machine.require_ready`: the attempt count is
    /// reset only once every subscribe is answered). Each subscribe frame carries a `ref`, which
    /// wsgate echoes in its ack or error. 0: do not wait for acks (for servers that send none).
    std::chrono::milliseconds subscribe_ack_timeout{10000};
    /// The query parameter that carries the token provider's token on every connect (replacing
    /// one already in the URL); not empty.
    std::string token_query_parameter = "token";
};

/**
 * What ReconnectingClient::status() and the status handler report: the state machine's snapshot
 * (state, attempt count, next attempt time, given up, probing, …) and why the last attempt or
 * connection failed.
 * @par Thread Safety Value type.
 */
struct ReconnectingClientStatus : client::ClientStatus {
    /// Why the last attempt or connection failed, for people: "handshake timed out", "TCP connect
    /// failed: Connection refused", "upgrade refused (HTTP 401)", "token request timed out",
    /// "subscribe to 'events' not acknowledged in time", "connection closed (1006)",
    /// "heartbeat timeout". Empty once a connection opens.
    std::string last_failure;
    /// Sockets opened successfully so far.
    std::size_t connections_opened = 0;
    bool operator==(const ReconnectingClientStatus&) const = default;
};

/**
 * A reconnecting WebSocket client for C++ hosts: the same behaviour as the web client
 * (examples/web/wsgate-client.js), over a Beast socket.
 *
 * Every socket event goes into a ClientStateMachine on one worker thread, which tells this class
 * what to do: open a socket (a fresh Client each attempt), send a frame, close, deliver a message
 * or switch polling on and off. Messages sent while disconnected wait in the bounded queue and go
 * out in order after the re-subscriptions once the socket is back.
 *
 * **Tokens.** With a token provider (set_token_provider()), every connect and reconnect asks it
 * for the token (sent as query parameter `token_query_parameter`), and a `token_expiring` event
 * from the server is answered with `{"type":"refresh","token":…}` on the live connection, so the
 * connection outlives each token. Without one, the server closes the connection with 4001
 * (CloseCode::token_expired) when the URL's token expires.
 *
 * **Deadlines.** Token (`token_timeout`), name resolution and TCP connect (`connect_timeout`),
 * handshake (`handshake_timeout`) and each subscribe's ack (`subscribe_ack_timeout`): a step
 * that misses its deadline fails the attempt, status().last_failure says which, and the backoff
 * goes on.
 *
 * **After the cap.** After `max_attempts` failed attempts the client gives up on the backoff
 * (`disconnected`, should_poll()), then probes one socket every `machine.probe_interval`
 * (60 s + jitter; 0 = stay given up) and is live again as soon as one opens. retry() tries at
 * once with a fresh backoff; start() while running connects at once too.
 *
 * **Status.** status() and on_status() report the state, the attempt count and cap, when the
 * next attempt starts and why the last one failed: enough for "Reconnecting in 4 s (attempt
 * 3/10)". on_status() is called when any of it changes, not as time passes: a countdown display
 * computes the seconds left from `next_attempt_at` itself.
 *
 * **Typed handlers.** on("event_created", fn) sends messages of that `type` to `fn`, parsed
 * (client::MessageDispatcher); messages of other types, and anything not a JSON object with a
 * string `type`, go to on_message().
 *
 * **Recovery.** On topics that keep a history (streams, docs/delivery.md) the client keeps the
 * position it reached, `{offset, epoch}`, from the publications it receives and the subscribe
 * acks (a client::StreamTracker). Every resubscription after a reconnect carries
 * `"since":{"offset":N,"epoch":"E"}`, so the server replays what was published while the client
 * was away, then continues live. The subscribe ack's verdict goes to on_recovery(): recovered
 * with `missed` publications to follow, or not (`reason`), in which case the host must resync its
 * state for that topic; the client then tracks from the ack's `position`. A publication whose
 * offset was already received in its epoch (e.g. live and again in a replay) is dropped, never
 * passed to on_message(), and counted in duplicates_dropped(). Frames that are not JSON or have
 * unexpected field types are passed on unchanged and never stop the worker.
 *
 * @code
 * wsgate::beast::ReconnectingClient c{"ws://127.0.0.1:8080/ws?token=..."};
 * c.on("event_created", [](const nlohmann::json& m) { table.add(m["data"]); });
 * c.on_message([](std::string_view m) { std::cout << m << '\n'; });  // every other type
 * c.on_status([](const wsgate::beast::ReconnectingClientStatus& s) { banner.show(s); });
 * c.on_recovery([](const wsgate::client::RecoveryInfo& r) {
 *     if (!r.recovered) refetch(r.topic);  // history lost (r.reason): reload the state
 * });
 * c.subscribe("events");
 * c.start();
 * @endcode
 * @par Thread Safety Safe; callbacks run on the worker thread, one at a time.
 */
class ReconnectingClient {
public:
    using MessageHandler = std::function<void(std::string_view)>;
    /// A typed handler: the parsed message (see client::MessageDispatcher).
    using TypedHandler = client::MessageDispatcher::Handler;
    using StateHandler = std::function<void(client::ConnectionState)>;
    using StatusHandler = std::function<void(const ReconnectingClientStatus&)>;
    using PollingHandler = std::function<void(bool polling)>;
    /// Called for each subscribe ack that reports on recovery (see client::RecoveryInfo), before
    /// the ack itself goes to the message handler and before any replayed publication.
    using RecoveryHandler = std::function<void(const client::RecoveryInfo&)>;
    /**
     * Returns a currently valid token (empty: none available now). Called on a helper thread,
     * one call at a time, so it may block (e.g. an HTTP request): a call still running after
     * `token_timeout` fails the attempt, and the next attempt takes that call's result rather
     * than starting a second one. stop() and the destructor wait for a call in progress to
     * return, so it must return eventually.
     */
    using TokenProvider = std::function<std::string()>;

    /// @throws std::invalid_argument if `url` is not a `ws://` URL, a setting makes no sense
    /// (a deadline ≤ 0 or over 24 h, a negative subscribe_ack_timeout or probe_interval, an
    /// empty token_query_parameter, an invalid machine setting) or `clock` is null.
    explicit ReconnectingClient(std::string url, ReconnectingClientSettings settings = {},
                                std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>());
    ~ReconnectingClient();
    ReconnectingClient(const ReconnectingClient&) = delete;
    ReconnectingClient& operator=(const ReconnectingClient&) = delete;

    /// Handlers: set before start() (or between stop() and start()); they run on the worker thread.
    /// Every received message no typed handler takes (see on()).
    void on_message(MessageHandler h);
    /// Messages whose `type` is `type`, parsed; replaces an earlier handler, an empty `h` removes it.
    void on(std::string type, TypedHandler h);
    void on_state(StateHandler h);
    /// Called with a new snapshot whenever the status changes (not as the countdown runs).
    void on_status(StatusHandler h);
    void on_polling(PollingHandler h);
    void on_recovery(RecoveryHandler h);
    /// The host's token source, for connects, reconnects and `token_expiring` refreshes.
    void set_token_provider(TokenProvider p);

    /// Starts connecting (and keeps reconnecting) on the worker thread. While running: connects
    /// at once if not connected (after giving up: with a fresh backoff). After stop(): starts again.
    void start();
    /// A manual "Retry now": resets the backoff to attempt 0 and opens a socket at once unless one
    /// is open or opening. Works from every state, including after giving up; needs start().
    void retry();
    /// Closes the socket (1000) and stops the worker. Idempotent; start() may follow.
    void stop();
    /// Sends now if connected, else queues (bounded, drop oldest).
    void send(std::string text);
    /// Subscribes now and again after every reconnect (with `since` once a position is known).
    void subscribe(const std::string& topic);
    /// Unsubscribes and forgets the topic's position.
    void unsubscribe(const std::string& topic);
    /// Pauses the heartbeat and reconnect timer (a backgrounded app); resume() checks at once.
    void suspend();
    void resume();
    /// Changes the URL for later attempts (e.g. a refreshed token).
    void set_url(std::string url);

    [[nodiscard]] client::ConnectionState state() const;
    /// The current status (see ReconnectingClientStatus), from any thread.
    [[nodiscard]] ReconnectingClientStatus status() const;
    [[nodiscard]] bool should_poll() const;
    /// The close code of the last server close (e.g. 4001 when a token expired), if any.
    [[nodiscard]] std::optional<std::uint16_t> last_close_code() const;
    /// Sockets opened successfully so far (1 + reconnects).
    [[nodiscard]] std::size_t connections_opened() const noexcept { return opened_.load(); }
    /// The position reached on a subscribed stream topic (every publication up to it was
    /// received, or the host resynced to it), or nullopt (no stream, or nothing known yet).
    [[nodiscard]] std::optional<StreamPosition> position(std::string_view topic) const {
        return tracker_.position(topic);
    }
    /// Publications dropped because their offset had been received already.
    [[nodiscard]] std::uint64_t duplicates_dropped() const { return tracker_.duplicates(); }

private:
    struct Event {
        enum class Kind { open, close, error, message, command, token } kind;
        std::uint64_t generation = 0;
        std::uint16_t code = 0;  // close: the close code; error: 1 if the step timed out
        std::string text;        // message: the frame; error: the error's message; token: the token
        std::function<client::Actions(client::ClientStateMachine&)> command;
    };
    struct PendingAck {
        std::string topic;
        TimePoint deadline;
    };

    void post(Event e);
    void run();
    void handle(Event& e);
    void execute(const client::Actions& actions);
    void begin_attempt();
    void connect_socket(const std::string& token);
    void request_token();
    void check_deadlines(TimePoint now);
    /// Gives up on the current attempt or connection for a deadline this class enforces.
    void fail_attempt(std::string failure, std::uint16_t close_code, std::string reason);
    void forget_socket();
    void set_failure(std::string text);
    void publish_status();
    /// A subscribe frame gets a `ref` and an ack deadline; an unsubscribe ends the wait for its topic.
    [[nodiscard]] std::string prepare_frame(std::string frame);
    /// Ends the wait for the subscribe that `text` answers (its ack, or anything carrying its `ref`).
    void note_answer(std::string_view text);
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const;
    [[nodiscard]] std::string describe_connect_failure(const Event& e) const;

    std::string url_;  // guarded by mu_
    ReconnectingClientSettings settings_;
    std::shared_ptr<const Clock> clock_;
    client::ClientStateMachine machine_;
    client::StreamTracker tracker_;
    client::MessageDispatcher dispatcher_;
    ClientContext io_;
    StateHandler on_state_;
    StatusHandler on_status_;
    PollingHandler on_polling_;
    RecoveryHandler on_recovery_;
    TokenProvider token_provider_;

    std::mutex lifecycle_mu_;  // serializes start() and stop()
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    bool stopping_ = false;
    std::string last_failure_;  // guarded by mu_
    std::thread worker_;

    // worker thread only (and start()/stop() while no worker runs)
    std::shared_ptr<Client> socket_;
    std::uint64_t generation_ = 0;
    client::ConnectionState last_state_ = client::ConnectionState::disconnected;
    std::optional<ReconnectingClientStatus> last_status_;
    bool awaiting_token_ = false;  // the current attempt waits for the token provider
    TimePoint token_deadline_{};
    bool token_inflight_ = false;  // a token provider call is running on its helper thread
    bool refresh_wanted_ = false;  // a `token_expiring` event waits for the next token
    std::future<void> token_call_;
    std::map<std::string, PendingAck, std::less<>> pending_acks_;  // by the `ref` (as JSON text)
    std::uint64_t next_ref_ = 0;
    std::atomic<std::size_t> opened_{0};
};

}  // namespace wsgate::beast
