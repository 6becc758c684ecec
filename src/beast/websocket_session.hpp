#pragma once
// One WebSocket connection of the server: the handshake after Gateway::on_connect accepted it,
// the read loop feeding Gateway::on_message, the bounded queue the Transport fills, batched
// (corked) writes, and the close handshake. Internal to wsgate::beast.
#include "cork_stream.hpp"
#include "server_state.hpp"

#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::beast {

namespace bb = boost::beast;
namespace http = bb::http;
namespace websocket = bb::websocket;

/// Beast's permessage-deflate options for the server role from wsgate's settings (validated by
/// the Server's constructor). Also used by benchmarks/bench_beast_deflate.cpp.
inline websocket::permessage_deflate beast_deflate_options(const DeflateSettings& d) {
    websocket::permessage_deflate pmd;
    pmd.server_enable = d.enabled;
    pmd.server_max_window_bits = d.server_max_window_bits;
    pmd.client_max_window_bits = d.client_max_window_bits;
    pmd.server_no_context_takeover = d.server_no_context_takeover;
    pmd.client_no_context_takeover = d.client_no_context_takeover;
    pmd.compLevel = d.level;
    pmd.memLevel = d.memory_level;
    pmd.msg_size_threshold = d.min_message_bytes;
    return pmd;
}

// Socket work runs on the connection's io thread (see Worker); the queue is shared with
// senders on other threads under `mu_`.
class WsSession : public std::enable_shared_from_this<WsSession>, private detail::CorkStream::Listener {
public:
    WsSession(Server::Impl& srv, tcp::socket&& socket, ConnectionId id)
        : srv_(srv), ws_(std::move(socket)), worker_(srv.worker_of(ws_.get_executor())), id_(std::move(id)) {}
    ~WsSession() { release_slot(); }
    WsSession(const WsSession&) = delete;
    WsSession& operator=(const WsSession&) = delete;

    /// Takes over a place under the caps, taken by Server::Impl::take_slot for `address`.
    void hold_slot(std::string address);
    /// Gives the place back once (the session ended or was denied).
    void release_slot() {
        if (slot_held_.exchange(false)) srv_.release_slot(slot_address_);
    }

    const ConnectionId& id() const noexcept { return id_; }
    void set_id(ConnectionId id) { id_ = std::move(id); }
    auto executor() { return ws_.get_executor(); }
    /// On the connection's io thread: writes what is queued.
    void start_write() { do_write(); }

    /// Any thread: queues a prepared frame (backpressure beyond `queue_capacity`) and schedules
    /// a write.
    SendStatus enqueue(const detail::Frame& f);

    /// Any thread: sends a close frame with `code` once the queued frames went out.
    void close(CloseCode code, std::string_view reason);

    // Answers a denied upgrade with an HTTP status and ends the socket.
    void deny(int status, const std::string& reason, unsigned version);

    /// Answers the upgrade the Gateway accepted (timeouts, limits, subprotocol), then reads.
    void accept(http::request<http::string_body> req);

    /// What a peer's silence calls for (see Server::Impl::heartbeat_sweep).
    enum class Heartbeat { none, ping, expire };
    /// Any thread. The heartbeat sweep's look at this session at `now` (steady clock, ns): a ping
    /// after half of `timeout` without a frame from the peer (once per quiet spell, with `pings`),
    /// the end after all of it. Asks for each once; the sweep posts the action to its io thread.
    Heartbeat heartbeat_check(std::int64_t now, std::int64_t timeout, bool pings) noexcept;
    /// On its io thread: sends the keep-alive ping (unless one is on its way or the close began).
    void send_heartbeat_ping();
    /// On its io thread: ends a silent peer (EndReason::heartbeat) by closing its socket.
    void expire_heartbeat();
    /// The steady clock in nanoseconds, as the heartbeat compares it.
    static std::int64_t heartbeat_now() noexcept {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }

private:
    /// A frame (or the first byte of a message) came from the peer.
    void saw_traffic() noexcept { last_rx_.store(heartbeat_now(), std::memory_order_relaxed); }

    void on_accept(boost::system::error_code ec);

    // Waits for the next message with no heap buffer (see websocket_session.cpp).
    void do_read();

    void on_first_byte(boost::system::error_code ec, std::size_t n);

    void on_read(boost::system::error_code ec);

    // Strand only. Writes queued frames; when several are waiting, they leave as one batch with
    // one socket write. Prepared frames go to the next layer as they are; on a connection that
    // negotiated compression each goes through the websocket stream (corked) instead.
    void do_write();

    void write_next();

    // CorkStream::Listener: the batch was written (or cannot be).
    void frames_written(boost::system::error_code ec) override;

    void batch_done();

    void write_failed();

    // Strand only. Starts the close handshake once the queue has been flushed.
    void maybe_close();

    void finish(boost::system::error_code ec);

    Server::Impl& srv_;
    websocket::stream<detail::CorkStream> ws_;
    Worker& worker_;  // the io thread the connection lives on
    ConnectionId id_;
    bb::flat_buffer rbuf_;  // the message being read; empty and unallocated while idle
    char probe_ = 0;        // the first byte of the next message (do_read)
    std::vector<detail::Frame> batch_;  // io thread only: a compressing connection's current write
    std::size_t batch_pos_ = 0;

    std::mutex mu_;
    std::vector<detail::Frame> queue_;  // not a deque: an empty vector costs no heap per idle connection
    bool accepted_ = false;
    bool write_scheduled_ = false;
    bool closing_ = false;
    bool overflow_ending_ = false;

    // io thread only
    bool writing_ = false;
    bool close_started_ = false;
    bool deflate_ = false;  // permessage-deflate was negotiated: frames go through Beast
    std::unique_ptr<websocket::close_reason> pending_close_;  // heap: a close_reason is ~130 bytes

    std::string slot_address_;
    std::atomic<bool> slot_held_{false};

    // Heartbeat: one sweep per server instead of a timer per connection (no pending wait and
    // no re-armed timer per message). Set and read from any thread.
    std::atomic<std::int64_t> last_rx_{0};    // last frame from the peer; 0 until the handshake is done
    std::atomic<std::int64_t> last_ping_{0};  // last keep-alive ping asked for
    std::atomic<bool> expiring_{false};       // the end was asked for
    // io thread only
    bool ping_inflight_ = false;
    bool heartbeat_expired_ = false;
};


}  // namespace wsgate::beast
