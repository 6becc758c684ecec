#pragma once
/** @file server.hpp A Boost.Beast WebSocket + HTTP server that feeds a Gateway and is its Transport. */

#include <wsgate/error.hpp>
#include <wsgate/transport.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {
class Gateway;
}

namespace wsgate::beast {

/// What the server does when a connection's outbound queue is full.
enum class BackpressurePolicy {
    drop_newest,  ///< drop the new frame and report SendStatus::backpressure
    close,        ///< report backpressure and end the connection (1008, EndReason::backpressure)
};

/// Server settings; every field has a working default.
struct ServerSettings {
    std::string address = "127.0.0.1";  ///< IPv4 or IPv6 literal to bind
    unsigned short port = 8080;          ///< 0 = any free port (see Server::port())
    std::string ws_path = "/ws";         ///< upgrade requests to other paths get 404
    std::size_t threads = 1;             ///< io_context threads; each connection stays on one strand
    std::size_t queue_capacity = 1024;   ///< frames queued per connection before the policy applies
    /// When a connection has several frames queued, write them with one socket write (each is
    /// still its own WebSocket message). Off = one socket write per message.
    bool coalesce_writes = true;
    std::size_t max_batch_frames = 64;          ///< frames per coalesced write
    std::size_t max_batch_bytes = 256 * 1024;   ///< bytes per coalesced write (a bigger frame goes alone)
    BackpressurePolicy backpressure = BackpressurePolicy::drop_newest;
    /// Largest inbound WebSocket message; a bigger one is closed with 1009.
    std::size_t max_message_bytes = 1024 * 1024;
    std::size_t max_http_body_bytes = 64 * 1024;  ///< larger HTTP bodies get 413
    std::chrono::milliseconds handshake_timeout{10'000};
    /// No traffic from the peer for this long ends the connection (EndReason::heartbeat).
    std::chrono::milliseconds idle_timeout{60'000};
    /// Send a ping frame after half of `idle_timeout` without traffic.
    bool keep_alive_pings = true;
    /// Subprotocols the server may echo, in preference order. A client that offers
    /// `Sec-WebSocket-Protocol: wsgate, <token>` gets `wsgate` back (RFC 6455 §4.2.2).
    std::vector<std::string> subprotocols{"wsgate", "bearer"};
    /// Files under this directory are served for GET requests no handler claims (empty = off).
    std::string static_root;
    /// How long stop() waits for close handshakes before cutting sockets.
    std::chrono::milliseconds shutdown_timeout{3'000};
    std::string server_name = "wsgate";  ///< the `Server` header
};

/// A plain HTTP request as a handler sees it.
struct HttpRequest {
    std::string method;   ///< upper case: `GET`, `POST`, ...
    std::string target;   ///< path and query as sent
    std::string path;     ///< percent-decoded path without the query
    std::map<std::string, std::string> query;
    std::map<std::string, std::string> headers;  ///< names lower-case
    std::string body;
    std::string source_ip;

    /// A header by lower-case name, or nullptr.
    [[nodiscard]] const std::string* header(std::string_view lower_name) const {
        auto it = headers.find(std::string{lower_name});
        return it == headers.end() ? nullptr : &it->second;
    }
};

/// A handler's answer.
struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::map<std::string, std::string> headers;  ///< extra headers

    /// A JSON response.
    static HttpResponse json(int status, std::string body) {
        HttpResponse r;
        r.status = status;
        r.body = std::move(body);
        return r;
    }
};

/// Answers one HTTP request. Runs on an io thread: keep it short, never block on the network.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/**
 * A WebSocket and HTTP server on Boost.Beast that turns sockets into Gateway calls and is the
 * Gateway's Transport.
 *
 * Construct it, build the Gateway with it as the transport, attach() the Gateway, start():
 * @code
 * auto server = std::make_shared<wsgate::beast::Server>(wsgate::beast::ServerSettings{});
 * auto gw = std::make_shared<wsgate::Gateway>(wsgate::GatewaySettings{}, store, server, authorizer);
 * server->attach(gw);
 * server->route("GET", "/healthz", [](auto&) { return wsgate::beast::HttpResponse::json(200, "{}"); });
 * server->start();
 * server->wait();   // until stop()
 * @endcode
 *
 * Upgrades to `ws_path` are authorized through Gateway::on_connect before the handshake is
 * answered: a denial gets its HTTP status (401/403/429/503), never an open socket. The
 * connection's queue is registered under a pre-generated id (ConnectRequest::connection_id)
 * before on_connect runs, so a publish racing the connect is queued, not lost. Each connection
 * has a bounded queue of shared payloads; send() only queues, and frames waiting together leave
 * in one socket write (`coalesce_writes`). Close codes: Transport::close() sends its code, an
 * oversize message gets 1009, a text frame that is not UTF-8 gets 1007, stop() sends 1001; a
 * peer silent for `idle_timeout` (pings at half of it) is ended with EndReason::heartbeat.
 * With `threads == 1` everything runs on one io thread without strands; with more, each
 * connection runs on its own strand.
 *
 * @par Thread Safety Safe: send(), close(), route() and stop() may be called from any thread.
 */
class Server final : public Transport {
public:
    explicit Server(ServerSettings settings = {});
    ~Server() override;

    /// The Gateway that receives connects, messages and disconnects. Call before start().
    /// The server keeps a weak reference (the Gateway owns the server as its Transport).
    void attach(const std::shared_ptr<Gateway>& gateway);
    /// Registers a handler for `method` and exact `path`. Call before start().
    void route(std::string method, std::string path, HttpHandler handler);

    /// Binds, listens and starts the io threads. Throws std::system_error if it cannot bind.
    void start();
    /// The bound port (useful with `port = 0`), valid after start().
    [[nodiscard]] unsigned short port() const noexcept;
    /// Blocks until stop() has finished.
    void wait();
    /**
     * Graceful shutdown: stops accepting, ends every connection through Gateway::end with
     * EndReason::shutdown (close 1001), waits up to `shutdown_timeout`, then stops the threads.
     * Idempotent; must not be called from an io thread.
     */
    void stop();

    /// Connections with an open (or opening) WebSocket.
    [[nodiscard]] std::size_t connection_count() const;
    /// Frames dropped because a queue was full.
    [[nodiscard]] std::uint64_t dropped_frames() const noexcept;
    /// Frames that left in a socket write shared with other frames (coalesced writes).
    [[nodiscard]] std::uint64_t coalesced_frames() const noexcept;

    SendStatus send(const ConnectionId& id, const Payload& payload) override;
    void send_many(std::span<const ConnectionId> ids, const Payload& payload,
                   std::span<SendStatus> out) override;
    void close(const ConnectionId& id, CloseCode code, std::string_view reason) override;

    [[nodiscard]] const ServerSettings& settings() const noexcept;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace wsgate::beast
