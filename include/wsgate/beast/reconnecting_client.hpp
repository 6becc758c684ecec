#pragma once
/**
 * @file reconnecting_client.hpp A WebSocket client that rides through server restarts: the
 * client state machine (include/wsgate/client/) driving the Beast client.
 */

#include <wsgate/beast/client.hpp>
#include <wsgate/client/client_state_machine.hpp>
#include <wsgate/client/stream_tracker.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace wsgate::beast {

/// Settings of ReconnectingClient; every field has a working default.
struct ReconnectingClientSettings {
    /// Backoff `min(max, initial·2^attempt) + jitter(0–1000 ms)`, 10 attempts, heartbeat 30 s / 5 s,
    /// bounded outbound queue, automatic re-subscription.
    client::ClientSettings machine;
    /// Upgrade headers, subprotocols and limits of each socket.
    ClientSettings socket;
    /// How long one connect (TCP + handshake) may take before it counts as a failed attempt.
    std::chrono::milliseconds connect_timeout{5000};
    /// The query parameter that carries the token provider's token on every connect (replacing
    /// one already in the URL).
    std::string token_query_parameter = "token";
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
 * c.on_message([](std::string_view m) { std::cout << m << '\n'; });
 * c.on_state([](wsgate::client::ConnectionState s) { std::cout << to_string(s) << '\n'; });
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
    using StateHandler = std::function<void(client::ConnectionState)>;
    using PollingHandler = std::function<void(bool polling)>;
    /// Called for each subscribe ack that reports on recovery (see client::RecoveryInfo), before
    /// the ack itself goes to the message handler and before any replayed publication.
    using RecoveryHandler = std::function<void(const client::RecoveryInfo&)>;
    /// Returns a currently valid token (empty: none available now). Called on the worker thread,
    /// so it should return quickly (e.g. a token the host refreshes in the background).
    using TokenProvider = std::function<std::string()>;

    explicit ReconnectingClient(std::string url, ReconnectingClientSettings settings = {},
                                std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>());
    ~ReconnectingClient();
    ReconnectingClient(const ReconnectingClient&) = delete;
    ReconnectingClient& operator=(const ReconnectingClient&) = delete;

    /// Set before start().
    void on_message(MessageHandler h);
    void on_state(StateHandler h);
    void on_polling(PollingHandler h);
    void on_recovery(RecoveryHandler h);
    /// The host's token source, for connects, reconnects and `token_expiring` refreshes.
    void set_token_provider(TokenProvider p);

    /// Starts connecting (and keeps reconnecting) on the worker thread.
    void start();
    /// Closes the socket (1000) and stops the worker. Idempotent.
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
        enum class Kind { open, close, error, message, command } kind;
        std::uint64_t generation = 0;
        std::uint16_t code = 0;
        std::string text;
        std::function<client::Actions(client::ClientStateMachine&)> command;
    };
    void post(Event e);
    void run();
    void execute(const client::Actions& actions);
    void open_socket();
    [[nodiscard]] std::string current_token();
    /// The refresh for a `token_expiring` event (nothing for other messages or without a token).
    [[nodiscard]] client::Actions answer_token_expiring(std::string_view text);

    std::string url_;
    ReconnectingClientSettings settings_;
    std::shared_ptr<const Clock> clock_;
    client::ClientStateMachine machine_;
    client::StreamTracker tracker_;
    ClientContext io_;
    MessageHandler on_message_;
    StateHandler on_state_;
    PollingHandler on_polling_;
    RecoveryHandler on_recovery_;
    TokenProvider token_provider_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    bool stopping_ = false;
    std::thread worker_;

    // worker thread only
    std::shared_ptr<Client> socket_;
    std::uint64_t generation_ = 0;
    client::ConnectionState last_state_ = client::ConnectionState::disconnected;
    std::atomic<std::size_t> opened_{0};
};

}  // namespace wsgate::beast
