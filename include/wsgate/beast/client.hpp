#pragma once
/** @file client.hpp A small Boost.Beast WebSocket client for tests, tools and load generators. */

#include <wsgate/error.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsgate::beast {

/**
 * I/O threads shared by many clients (a load generator runs thousands of clients on one).
 * @par Thread Safety Safe.
 */
class ClientContext {
public:
    explicit ClientContext(std::size_t threads = 1);
    ~ClientContext();
    ClientContext(const ClientContext&) = delete;
    ClientContext& operator=(const ClientContext&) = delete;

    struct Impl;
    [[nodiscard]] const std::shared_ptr<Impl>& impl() const noexcept { return impl_; }

private:
    std::shared_ptr<Impl> impl_;
};

/// The step of a connect: resolving the host name, the TCP connect, the WebSocket handshake.
enum class ConnectStep { none, resolve, tcp_connect, handshake };
/// `none`, `resolve`, `TCP connect`, `handshake`.
[[nodiscard]] std::string_view to_string(ConnectStep s) noexcept;

/// The deadlines of one connect, each > 0.
struct ConnectTimeouts {
    std::chrono::milliseconds connect{5000};    ///< name resolution and TCP connect together
    std::chrono::milliseconds handshake{5000};  ///< the WebSocket upgrade request and response
};

/// Client settings.
struct ClientSettings {
    std::map<std::string, std::string> headers;  ///< extra upgrade headers (e.g. `User-Agent`)
    std::string subprotocols;                    ///< `Sec-WebSocket-Protocol` to offer, if any
    std::size_t max_message_bytes = 16 * 1024 * 1024;
    std::size_t max_queued_receives = 1 << 20;   ///< receive() buffer; older frames are dropped
};

/**
 * A WebSocket client: connect to `ws://host:port/path?query`, send text, receive text, close.
 *
 * Received frames go to the handler set with on_message() (called on an I/O thread), or when no
 * handler is set, to a queue read by receive().
 * @code
 * wsgate::beast::Client c;
 * if (auto ec = c.connect("ws://127.0.0.1:8080/ws?token=abc")) { ... c.handshake_status() ... }
 * c.send(R"({"type":"ping"})");
 * auto frame = c.receive(std::chrono::seconds(5));
 * c.close();
 * @endcode
 * @par Thread Safety send(), receive() and close() may be called from any thread; connect() once.
 */
class Client {
public:
    using MessageHandler = std::function<void(std::string_view)>;
    using CloseHandler = std::function<void(int code, std::string_view reason)>;

    /// A client with its own I/O thread.
    explicit Client(ClientSettings settings = {});
    /// A client on shared I/O threads (`ctx` must outlive it).
    explicit Client(ClientContext& ctx, ClientSettings settings = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Set before connect(): frames go here instead of the receive() queue.
    void on_message(MessageHandler h);
    /// Set before connect(): called once when the connection ends (code 1006 if no close frame).
    void on_close(CloseHandler h);

    /**
     * Connects and completes the WebSocket handshake; blocks up to `timeout`.
     * A refused upgrade returns an error and leaves handshake_status()/handshake_body() set.
     */
    std::error_code connect(std::string_view url, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    /// Starts connecting without blocking; `done` is called on an I/O thread. `timeout` applies to
    /// name resolution with the TCP connect, and again to the handshake.
    void async_connect(std::string_view url, std::function<void(std::error_code)> done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));
    /**
     * Starts connecting without blocking, with a deadline per step; `done` is called on an I/O
     * thread, once, unless the Client is destroyed first. A step that runs out of time fails with
     * `std::errc::timed_out`; failed_step() tells which one.
     */
    void async_connect(std::string_view url, std::function<void(std::error_code)> done, ConnectTimeouts timeouts);

    /// Queues a text frame. Fails if not open.
    std::error_code send(std::string text);
    /// The next received frame, or nullopt after `timeout` or once closed and drained.
    std::optional<std::string> receive(std::chrono::milliseconds timeout);
    /// Sends a close frame and waits up to `timeout` for the close handshake.
    std::error_code close(CloseCode code = CloseCode::normal, std::string_view reason = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
    /// Drops the TCP connection without a close frame (a vanished peer).
    void abort();

    [[nodiscard]] bool is_open() const noexcept;
    /// HTTP status of the upgrade response (101 on success, 401/403/... when refused, 0 if none).
    [[nodiscard]] int handshake_status() const;
    [[nodiscard]] std::string handshake_body() const;
    /// The step a failed connect stopped at (`none` while connecting and after success).
    [[nodiscard]] ConnectStep failed_step() const;
    /// The subprotocol the server selected (empty if none).
    [[nodiscard]] std::string subprotocol() const;
    /// The close code the connection ended with (the server's close frame), once ended.
    [[nodiscard]] std::optional<int> close_code() const;
    /// Blocks until the connection has ended or `timeout` passed; true if it ended.
    bool wait_closed(std::chrono::milliseconds timeout);

    struct Impl;

private:
    std::unique_ptr<ClientContext> own_ctx_;
    std::shared_ptr<Impl> impl_;
};

}  // namespace wsgate::beast
