#pragma once
/** @file app.hpp A WebSocket back end in one object: Server, Gateway, store, timers and signals. */

#include <wsgate/audience.hpp>
#include <wsgate/authorizer.hpp>
#include <wsgate/beast/server.hpp>
#include <wsgate/bus.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection_store.hpp>
#include <wsgate/envelope.hpp>
#include <wsgate/event_router.hpp>
#include <wsgate/gateway.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace wsgate::beast {

/// Everything an App is configured with; every field has a working default.
struct AppSettings {
    ServerSettings server;    ///< the socket layer (address, port 8080, `/ws`, one io thread, ...)
    GatewaySettings gateway;  ///< the domain rules (TTL 1 h, rate limits, topic rules: none open)
    /// How often Gateway::sweep() runs on the io loop (TTL, token expiry, idle time, maximum age,
    /// node lease). Must be positive.
    std::chrono::milliseconds sweep_interval{1'000};
    /// run() ends gracefully on SIGINT or SIGTERM: every client gets close 1001 (going away),
    /// then run() returns. Off: the host handles signals and calls stop() itself.
    bool handle_signals = true;
};

/// The plug-ins an App uses instead of its defaults; each null member means the default.
struct AppPlugins {
    std::shared_ptr<ConnectionStore> store;   ///< default: InMemoryConnectionStore
    std::shared_ptr<const Clock> clock;       ///< default: SystemClock
    std::shared_ptr<Bus> bus;                 ///< default: none (a single node)
};

/**
 * A WebSocket back end in one object, in the spirit of uWebSockets' App: it owns the Server
 * (the Transport), the Gateway, the store and the authorizer, runs the sweep on a timer, and stops
 * gracefully on SIGINT/SIGTERM.
 *
 * @code
 * wsgate::beast::AppSettings s;
 * s.server.port = 9000;
 * s.gateway.router.topic_rules = {{"news:*", "", "", true}};
 * wsgate::beast::App app{s, std::make_shared<wsgate::AnonymousAuthorizer>()};
 * app.on("hello", [](wsgate::MessageContext& m) { m.ack({{"hi", m.principal().user_id}}); },
 *        wsgate::RouteAccess::include_anonymous);
 * app.http("GET", "/healthz", [](const auto&) { return wsgate::beast::HttpResponse::json(200, "{}"); });
 * app.every(std::chrono::seconds(5), [&] {
 *     app.publish(wsgate::Envelope{"tick"}, wsgate::Audience::topic("news:1"));
 * });
 * app.run();   // until SIGINT/SIGTERM or stop()
 * @endcode
 *
 * Threads: message handlers (on()), HTTP handlers (http()), every() and post() callbacks and the
 * sweep all run on the server's io threads (one by default), so they must not block for long.
 * With `server.threads > 1` they may run concurrently with each other.
 *
 * @par Thread Safety stop(), publish(), post() and every() are safe from any thread (io threads
 * included); on() and http() are meant for set-up before run(); run() is called once.
 */
class App {
public:
    /// The handler of a client message route (see EventRouter::on).
    using RouteHandler = EventRouter::Handler;

    /**
     * Builds the server and the Gateway; nothing listens before run().
     * @param authorizer who may connect; required, since nothing is open by default
     *        (AnonymousAuthorizer for anonymous readers, or a token authorizer of wsgate::auth).
     * @throws std::invalid_argument for invalid settings (a non-positive `sweep_interval`, a zero
     * `server.queue_capacity` or `server.max_batch_frames`, a `server.ws_path` not starting with
     * `/`, `server.max_batch_bytes` or `server.max_message_bytes` of 0) or a null authorizer;
     * the message names the field.
     */
    App(AppSettings settings, std::shared_ptr<Authorizer> authorizer, AppPlugins plugins = {});
    ~App();
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    /// Registers a client message handler for `route` (the route key, `type` by default).
    App& on(const std::string& route, RouteHandler handler, RouteAccess access = RouteAccess::authenticated);
    /// Registers a client message handler for `route` + `action` (RouterSettings::action_key).
    App& on(const std::string& route, const std::string& action, RouteHandler handler,
            RouteAccess access = RouteAccess::authenticated);

    /**
     * Registers an HTTP handler for `method` (upper case) and exact `path`.
     * @throws std::invalid_argument if the route is already registered, the method is empty or
     * not upper case, the path does not start with `/`, or the handler is empty;
     * std::logic_error once run() has started.
     */
    App& http(const std::string& method, const std::string& path, HttpHandler handler);

    /**
     * Runs `fn` on the io loop every `interval`, first after one interval, until the App stops.
     * A run never overlaps the previous one of the same timer.
     * @throws std::invalid_argument for a non-positive interval or an empty function.
     */
    void every(std::chrono::milliseconds interval, std::function<void()> fn);
    /// Runs `fn` once on the io loop: soon while running, or as soon as run() starts the loop
    /// (the socket listens by then). Once run() has returned, `fn` never runs.
    /// @throws std::invalid_argument for an empty function.
    void post(std::function<void()> fn);
    /// Called on run()'s thread when a stop begins (a signal or stop()), before clients are closed.
    void on_stop(std::function<void()> fn);

    /// Publishes through the Gateway (bus, permissions, Gone cleanup). See Gateway::publish.
    BroadcastReport publish(const Envelope& envelope, const Audience& audience);

    /**
     * Listens and serves until stop() or (with `handle_signals`) SIGINT/SIGTERM; then closes every
     * connection with 1001 and returns. Blocks the calling thread, which must not be an io thread.
     * @throws std::system_error if it cannot listen; std::logic_error if called a second time.
     */
    void run();
    /// Asks run() to return after a graceful stop. Safe from any thread, also before run().
    void stop();

    /// The bound port once run() is listening (useful with `server.port = 0`), else 0.
    [[nodiscard]] unsigned short port() const noexcept;
    [[nodiscard]] Gateway& gateway() noexcept;
    [[nodiscard]] Server& server() noexcept;
    [[nodiscard]] const AppSettings& settings() const noexcept;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate::beast
