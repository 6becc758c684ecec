#pragma once
/** @file server.hpp A Boost.Beast WebSocket + HTTP server that feeds a Gateway and is its Transport. */

#include <wsgate/error.hpp>
#include <wsgate/transport.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
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

class App;

/// What the server does when a connection's outbound queue is full.
enum class BackpressurePolicy {
    drop_newest,  ///< drop the new frame and report SendStatus::backpressure
    close,        ///< report backpressure and end the connection (1008, EndReason::backpressure)
};

/**
 * permessage-deflate (RFC 7692): WebSocket messages compressed with DEFLATE, negotiated per
 * connection when `enabled` and the client offers it. Off by default: compressing messages that
 * carry secrets next to attacker-influenced text leaks the secrets through the compressed size
 * (CRIME/BREACH), and each compressing connection holds its own DEFLATE state (about 170 KiB at
 * the default window and memory level, from its first compressed message on). docs/server.md and
 * docs/security.md explain the trade-offs; docs/benchmarks-beast.md gives the costs.
 *
 * The server never offers more than these values; a client may ask for less (smaller windows,
 * no context takeover), and then Beast uses what the client asked for.
 */
struct DeflateSettings {
    bool enabled = false;  ///< negotiate the extension with clients that offer it
    /// LZ77 window of the server's compressor, 2^bits bytes (9..15). Smaller uses less memory per
    /// connection and finds fewer repeats (zlib cannot use 8).
    int server_max_window_bits = 15;
    /**
     * Largest window a client may compress with (9..15); it sizes the server's decompressor.
     * Below 15, a client whose offer lacks `client_max_window_bits` (a client that cannot limit
     * its window) gets no compression at all, as RFC 7692 §7.1.2.2 requires.
     */
    int client_max_window_bits = 15;
    /// Reset the server's compressor after every message: no data of one message shapes the size
    /// of the next (see docs/security.md), at the price of a worse ratio for small messages.
    bool server_no_context_takeover = false;
    /// Ask clients to reset their compressor after every message.
    bool client_no_context_takeover = false;
    int level = 6;         ///< DEFLATE compression level 0..9 (0 stores, 1 fastest, 9 smallest)
    int memory_level = 4;  ///< zlib memLevel 1..9: the compressor's hash table and buffers
    /// Messages smaller than this leave uncompressed even on a deflate connection (pongs, acks).
    std::size_t min_message_bytes = 256;
};

/// Server settings; every field has a working default.
struct ServerSettings {
    std::string address = "127.0.0.1";  ///< IPv4 or IPv6 literal to bind
    unsigned short port = 8080;          ///< 0 = any free port (see Server::port())
    std::string ws_path = "/ws";         ///< upgrade requests to other paths get 404
    /// io threads (0 counts as 1). Each runs its own io_context, and each connection lives on one
    /// of them (taken in turn), so a connection's handlers never run concurrently.
    std::size_t threads = 1;
    /**
     * Pins io thread `i` to CPU `thread_cpus[i % size]` (Linux; empty = no pinning, the default).
     * A CPU this process may not use leaves that thread unpinned.
     */
    std::vector<int> thread_cpus;
    std::size_t queue_capacity = 1024;   ///< frames queued per connection before the policy applies
    /// When a connection has several frames queued, write them with one socket write (each is
    /// still its own WebSocket message). Off = one socket write per message.
    bool coalesce_writes = true;
    std::size_t max_batch_frames = 64;          ///< frames per coalesced write
    std::size_t max_batch_bytes = 256 * 1024;   ///< bytes per coalesced write (a bigger frame goes alone)
    /**
     * How long an io thread waits, after a connection of it got a frame, before it writes its
     * connections: frames queued meanwhile leave in the same socket write. Fewer system calls
     * when publishes come in bursts, for up to this much latency. A connection still writing
     * earlier frames writes what queued meanwhile as soon as that write is done. 0 (the
     * default) writes on the next turns of the event loop, once no connection of the thread
     * is still reading a message (a burst of publishes already in a socket joins the same
     * writes; at most 1 ms later). At most 1 s.
     */
    std::chrono::microseconds flush_delay{0};
    BackpressurePolicy backpressure = BackpressurePolicy::drop_newest;
    /// Largest inbound WebSocket message; a bigger one is closed with 1009.
    std::size_t max_message_bytes = 1024 * 1024;
    std::size_t max_http_body_bytes = 64 * 1024;  ///< larger HTTP bodies get 413
    /// Largest request line plus header fields; a bigger request gets 431 (upgrades included).
    std::size_t max_http_header_bytes = 16 * 1024;
    /**
     * Open WebSocket sessions this server holds at most; an upgrade beyond it gets 503 before
     * the token is checked. 0 = unlimited. The default keeps a node below a typical raised
     * descriptor limit with room for HTTP requests and outbound connections (store, bus).
     */
    std::size_t max_connections = 10'000;
    /**
     * Open WebSocket sessions from one remote address at most; an upgrade beyond it gets 503.
     * 0 = unlimited. On by default so that one host cannot take a public node's whole capacity;
     * 64 leaves room for a household or office behind one NAT address. Behind a reverse proxy
     * every client has the proxy's address: raise it or set 0 there.
     */
    std::size_t max_connections_per_address = 64;
    /// After a failed accept (out of descriptors: EMFILE/ENFILE), wait this long before the next
    /// one, doubling up to `accept_retry_max`; a success resets it.
    std::chrono::milliseconds accept_retry_min{10};
    std::chrono::milliseconds accept_retry_max{1'000};
    std::chrono::milliseconds handshake_timeout{10'000};
    /**
     * No frame at all from the peer (no message, no ping, no pong) for this long ends the
     * connection (EndReason::heartbeat). 0 = off. A message counts when its first byte and when
     * its last byte arrive. One sweep per server checks every connection sixteen times per
     * timeout (at most once a second), so the end comes up to 1/16 of it late. Distinct from
     * GatewaySettings::inactivity_timeout, which counts only messages and the pongs this server
     * reports through Gateway::touch().
     */
    std::chrono::milliseconds heartbeat_timeout{60'000};
    /// Send a ping frame after half of `heartbeat_timeout` without traffic (ServerMetrics::pings).
    bool keep_alive_pings = true;
    /**
     * Subprotocol names the server accepts and echoes, in preference order. The token convention
     * for clients that cannot set headers (browsers): offer `Sec-WebSocket-Protocol: wsgate,
     * <token>` (or `bearer, <token>`); the entry after the first accepted name is the token, and
     * the server echoes the name, never the token (RFC 6455 §4.2.2). An upgrade that offers
     * subprotocols but none of these gets 400: a browser would refuse the handshake anyway.
     */
    std::vector<std::string> subprotocols{"wsgate", "bearer"};
    /// Files under this directory are served for GET requests no handler claims (empty = off).
    std::string static_root;
    /// How long stop() waits for close handshakes before cutting sockets.
    std::chrono::milliseconds shutdown_timeout{3'000};
    std::string server_name = "wsgate";  ///< the `Server` header
    /// permessage-deflate compression; off by default (see DeflateSettings).
    DeflateSettings deflate;
};

/**
 * Counters of the socket layer (the Gateway's Metrics count the rest).
 * @par Thread Safety Safe: relaxed atomics.
 */
struct ServerMetrics {
    using Counter = std::atomic<std::uint64_t>;
    Counter accept_errors{0};         ///< failed accept() calls (out of descriptors, ...)
    Counter refused_node_cap{0};      ///< upgrades answered 503: `max_connections` reached
    Counter refused_address_cap{0};   ///< upgrades answered 503: `max_connections_per_address` reached
    Counter header_too_large{0};      ///< requests answered 431
    Counter bad_requests{0};          ///< requests that did not parse, answered 400
    Counter pongs{0};                 ///< pongs received (each one reported to Gateway::touch)
    Counter pings{0};                 ///< keep-alive pings sent to quiet peers (`keep_alive_pings`)
    Counter deflate_accepted{0};      ///< handshakes answered with permessage-deflate
    Counter data_writes{0};           ///< socket writes of queued messages (messages per write: deliveries / this)
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
 * Upgrades to `ws_path` are checked against `max_connections` and `max_connections_per_address`
 * (503 when full, before any token is checked), then authorized through Gateway::on_connect
 * before the handshake is answered: a denial gets its HTTP status (401/403/429/503), never an
 * open socket. The
 * connection's queue is registered under a pre-generated id (ConnectRequest::connection_id)
 * before on_connect runs, so a publish racing the connect is queued, not lost. Each connection
 * has a bounded queue of shared frames: a message is framed once (RFC 6455 §5.2, no mask) and
 * the same bytes are queued for every connection it goes to; send() only queues, and frames
 * waiting together leave in one socket write (`coalesce_writes`, `flush_delay`). Close codes: Transport::close() sends its code, an
 * oversize message gets 1009, a text frame that is not UTF-8 gets 1007, stop() sends 1001; a
 * peer silent for `heartbeat_timeout` (pings at half of it) is ended with EndReason::heartbeat;
 * each pong is reported to Gateway::touch(). A failed accept (out of descriptors) is counted and
 * retried after a doubling delay (`accept_retry_min` to `accept_retry_max`), never at once.
 * With `deflate.enabled`, clients that offer permessage-deflate get compressed messages; the
 * `max_message_bytes` limit applies to the inflated size, so a small compressed frame that would
 * inflate beyond it is closed with 1009 before it is inflated further.
 * HEAD is answered like GET without a body; a HEAD without its own route uses the GET route.
 * Each io thread runs its own io_context and writes its own connections; a connection stays
 * on one thread, so no strands are needed (`threads`, `thread_cpus`). App (app.hpp) builds all of this, with timers, the sweep
 * and signal handling, in one object.
 *
 * @par Thread Safety Safe: send(), close(), route() and stop() may be called from any thread.
 */
class Server final : public Transport {
public:
    /// @throws std::invalid_argument for `deflate` values out of range (window bits 9..15, level
    /// 0..9, memory level 1..9); the message names the field.
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
    /// The socket layer's counters.
    [[nodiscard]] const ServerMetrics& metrics() const noexcept;
    /// The socket layer's counters as Prometheus text (`wsgate_accept_errors_total`,
    /// `wsgate_upgrades_refused_total{reason}`, ...), to append to Metrics::prometheus_text().
    [[nodiscard]] std::string prometheus_text() const;

    SendStatus send(const ConnectionId& id, const Payload& payload) override;
    void send_many(std::span<const ConnectionId> ids, const Payload& payload,
                   std::span<SendStatus> out) override;
    void close(const ConnectionId& id, CloseCode code, std::string_view reason) override;

    [[nodiscard]] const ServerSettings& settings() const noexcept;

    struct Impl;

private:
    friend class App;  // runs its timers, posts and signal handling on this server's io loop
    std::shared_ptr<Impl> impl_;
};

}  // namespace wsgate::beast
