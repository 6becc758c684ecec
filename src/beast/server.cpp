// The Boost.Beast server: HTTP routes, static files, WebSocket upgrades authorized through the
// Gateway, and the Transport (bounded per-connection queues of shared payloads).
#include <wsgate/beast/server.hpp>

#include "http_handling.hpp"

#include <wsgate/authorizer.hpp>
#include <wsgate/gateway.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

namespace wsgate::beast {

namespace net = boost::asio;
namespace bb = boost::beast;
namespace http = bb::http;
namespace websocket = bb::websocket;
using tcp = net::ip::tcp;

namespace {

using detail::json_error;
using detail::lower_headers;
using detail::split_list;

std::string remote_ip(const tcp::socket& s) {
    boost::system::error_code ec;
    auto ep = s.remote_endpoint(ec);
    return ec ? std::string{} : ep.address().to_string();
}

}  // namespace


namespace detail {

// A completion waiting inside CorkStream (move-only handlers, type-erased).
struct Pending {
    virtual ~Pending() = default;
    virtual void complete(bb::error_code ec, std::size_t n) = 0;
};

template <class Handler>
struct PendingHandler final : Pending {
    PendingHandler(Handler h, std::size_t n) : handler(std::move(h)), bytes(n) {}
    void complete(bb::error_code ec, std::size_t) override {
        auto ex = net::get_associated_executor(handler);
        net::post(ex, bb::bind_front_handler(std::move(handler), ec, ec ? std::size_t{0} : bytes));
    }
    Handler handler;
    std::size_t bytes;
};

/**
 * The next layer under each WebSocket stream: a tcp_stream that can be corked. While corked,
 * frames the websocket stream writes are gathered in memory and their writes complete at once;
 * uncork() sends everything gathered with one socket write. Writes arriving while a flush is on
 * the wire wait their turn (in order) and complete when their bytes were written.
 * Used on the connection's strand only.
 */
class CorkStream {
public:
    using executor_type = bb::tcp_stream::executor_type;

    explicit CorkStream(bb::tcp_stream&& s) : s_(std::move(s)) {}

    executor_type get_executor() noexcept { return s_.get_executor(); }
    bb::tcp_stream& next_layer() noexcept { return s_; }
    const bb::tcp_stream& next_layer() const noexcept { return s_; }

    /// Something that keeps the owner alive while a flush is on the wire.
    void set_owner(std::weak_ptr<void> owner) { owner_ = std::move(owner); }

    template <class MutableBufferSequence, class ReadHandler>
    auto async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
        return s_.async_read_some(buffers, std::forward<ReadHandler>(handler));
    }

    template <class ConstBufferSequence, class WriteHandler>
    auto async_write_some(const ConstBufferSequence& buffers, WriteHandler&& token) {
        return net::async_initiate<WriteHandler, void(bb::error_code, std::size_t)>(
            [this](auto handler, const ConstBufferSequence& bufs) {
                using H = std::decay_t<decltype(handler)>;
                if (!corked_ && !flushing_ && pending_.empty()) {
                    s_.async_write_some(bufs, std::move(handler));
                    return;
                }
                if (error_) {
                    PendingHandler<H>(std::move(handler), 0).complete(error_, 0);
                    return;
                }
                const std::size_t n = append(bufs);
                if (corked_) {
                    PendingHandler<H>(std::move(handler), n).complete({}, n);
                } else {
                    waiting_.push_back(std::make_unique<PendingHandler<H>>(std::move(handler), n));
                    if (!flushing_) flush();
                }
            },
            token, buffers);
    }

    void cork() noexcept { corked_ = true; }

    /// Ends a cork: sends what was gathered, then calls `done(ec)` (on this strand).
    void uncork(std::function<void(bb::error_code)> done) {
        corked_ = false;
        after_flush_.push_back(std::move(done));
        if (!flushing_) {
            if (pending_.empty()) finish_round({});
            else flush();
        }
    }

    /// Runs `fn` once nothing is buffered or on the wire (the close handshake's teardown).
    void when_drained(std::function<void(bb::error_code)> fn) {
        if (!flushing_ && pending_.empty()) {
            fn(error_);
            return;
        }
        after_flush_.push_back(std::move(fn));
    }

private:
    template <class ConstBufferSequence>
    std::size_t append(const ConstBufferSequence& bufs) {
        std::size_t n = 0;
        for (auto it = net::buffer_sequence_begin(bufs); it != net::buffer_sequence_end(bufs); ++it) {
            net::const_buffer b = *it;
            pending_.append(static_cast<const char*>(b.data()), b.size());
            n += b.size();
        }
        return n;
    }

    void flush() {
        flushing_ = true;
        inflight_.swap(pending_);
        pending_.clear();
        auto waiters = std::make_shared<std::vector<std::unique_ptr<Pending>>>(std::move(waiting_));
        waiting_.clear();
        net::async_write(s_, net::buffer(inflight_),
                         [this, keep = owner_.lock(), waiters](bb::error_code ec, std::size_t) {
                             flushing_ = false;
                             inflight_.clear();
                             if (ec) error_ = ec;
                             for (auto& w : *waiters) w->complete(ec, 0);
                             if (!ec && !pending_.empty()) return flush();
                             if (ec) {
                                 for (auto& w : waiting_) w->complete(ec, 0);
                                 waiting_.clear();
                                 pending_.clear();
                             }
                             finish_round(ec);
                         });
    }

    void finish_round(bb::error_code ec) {
        auto callbacks = std::move(after_flush_);
        after_flush_.clear();
        for (auto& f : callbacks) f(ec ? ec : error_);
    }

    bb::tcp_stream s_;
    std::weak_ptr<void> owner_;
    std::string pending_;
    std::string inflight_;
    std::vector<std::unique_ptr<Pending>> waiting_;
    std::vector<std::function<void(bb::error_code)>> after_flush_;
    bb::error_code error_;
    bool corked_ = false;
    bool flushing_ = false;
};

// Closing the WebSocket tears down the TCP connection only after buffered frames went out.
inline void teardown(bb::role_type role, CorkStream& s, bb::error_code& ec) {
    using bb::websocket::teardown;
    teardown(role, s.next_layer(), ec);
}

template <class TeardownHandler>
void async_teardown(bb::role_type role, CorkStream& s, TeardownHandler&& handler) {
    auto pending = std::make_shared<std::decay_t<TeardownHandler>>(std::forward<TeardownHandler>(handler));
    s.when_drained([role, &s, pending](bb::error_code) {
        using bb::websocket::async_teardown;
        async_teardown(role, s.next_layer(), std::move(*pending));
    });
}

}  // namespace detail

class WsSession;

struct Server::Impl {
    explicit Impl(ServerSettings s)
        : settings(std::move(s)), ioc(static_cast<int>(std::max<std::size_t>(1, settings.threads))),
          acceptor(net::make_strand(ioc)), accept_timer(acceptor.get_executor()) {}

    ServerSettings settings;
    // Declared before `ioc`: sessions that handlers still hold give their slot back when the
    // io_context is destroyed, so the caps must outlive it.
    std::mutex caps_mu;
    std::size_t open_sessions = 0;
    std::unordered_map<std::string, std::size_t> open_per_address;
    enum class Refusal { none, node_cap, address_cap };
    Refusal take_slot(const std::string& address);
    void release_slot(const std::string& address);

    net::io_context ioc;
    tcp::acceptor acceptor;
    std::weak_ptr<Gateway> gateway;
    std::map<std::string, HttpHandler> routes;  // "METHOD path"
    std::vector<std::thread> threads;
    std::atomic<unsigned short> bound_port{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> coalesced{0};
    std::atomic<bool> accepting{false};
    ServerMetrics metrics;
    // acceptor's strand only
    net::steady_timer accept_timer;
    std::chrono::milliseconds accept_delay{0};

    mutable std::shared_mutex sessions_mu;
    std::unordered_map<ConnectionId, std::shared_ptr<WsSession>> sessions;

    std::mutex state_mu;
    std::condition_variable state_cv;
    bool started = false;
    bool stopping = false;
    bool stopped = false;

    // With one io thread, connections that received frames are written in one posted pass
    // (after the current handler, e.g. a whole fan-out, has queued everything), instead of one
    // post per connection; frames from several publishes then leave in one socket write.
    std::mutex dirty_mu;
    std::vector<std::shared_ptr<WsSession>> dirty;
    bool flush_posted = false;
    void schedule_write(std::shared_ptr<WsSession> s);
    void flush_dirty();

    void do_accept();
    void on_accept(boost::system::error_code ec, tcp::socket socket);
    std::shared_ptr<WsSession> find(const ConnectionId& id) const {
        std::shared_lock lk(sessions_mu);
        auto it = sessions.find(id);
        return it == sessions.end() ? nullptr : it->second;
    }
    void erase(const ConnectionId& id, const WsSession* s);
};

// One WebSocket connection. Socket work runs on the stream's strand; the queue is shared with
// senders on other threads under `mu_`.
class WsSession : public std::enable_shared_from_this<WsSession> {
public:
    WsSession(Server::Impl& srv, bb::tcp_stream&& stream, ConnectionId id)
        : srv_(srv), ws_(std::move(stream)), id_(std::move(id)) {}
    ~WsSession() { release_slot(); }
    WsSession(const WsSession&) = delete;
    WsSession& operator=(const WsSession&) = delete;

    /// Takes over a place under the caps, taken by Server::Impl::take_slot for `address`.
    void hold_slot(std::string address) {
        slot_address_ = std::move(address);
        slot_held_ = true;
    }
    /// Gives the place back once (the session ended or was denied).
    void release_slot() {
        if (slot_held_.exchange(false)) srv_.release_slot(slot_address_);
    }

    const ConnectionId& id() const noexcept { return id_; }
    void set_id(ConnectionId id) { id_ = std::move(id); }
    auto executor() { return ws_.get_executor(); }
    /// On the strand (or the only io thread): writes what is queued.
    void start_write() { do_write(); }

    SendStatus enqueue(const Payload& p) {
        bool schedule = false;
        {
            std::lock_guard lk(mu_);
            if (closing_) return SendStatus::gone;
            if (queue_.size() >= srv_.settings.queue_capacity) {
                srv_.dropped.fetch_add(1, std::memory_order_relaxed);
                if (srv_.settings.backpressure == BackpressurePolicy::close && !overflow_ending_) {
                    overflow_ending_ = true;
                    net::post(srv_.ioc, [gw = srv_.gateway, id = id_] {
                        if (auto g = gw.lock()) g->end(id, EndReason::backpressure, "backpressure");
                    });
                }
                return SendStatus::backpressure;
            }
            queue_.push_back(p);
            if (accepted_ && !write_scheduled_) schedule = write_scheduled_ = true;
        }
        if (schedule) srv_.schedule_write(shared_from_this());
        return SendStatus::ok;
    }

    void close(CloseCode code, std::string_view reason) {
        {
            std::lock_guard lk(mu_);
            if (closing_) return;
            closing_ = true;
        }
        // A close reason is at most 123 bytes (RFC 6455 §5.5).
        websocket::close_reason cr{static_cast<websocket::close_code>(static_cast<std::uint16_t>(code)), std::string{reason.substr(0, 120)}};
        net::dispatch(ws_.get_executor(), [self = shared_from_this(), cr] {
            self->pending_close_ = std::make_unique<websocket::close_reason>(cr);
            self->maybe_close();
        });
    }

    // Answers a denied upgrade with an HTTP status and ends the socket.
    void deny(int status, const std::string& reason, unsigned version) {
        release_slot();
        auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version);
        res->set(http::field::server, srv_.settings.server_name);
        res->set(http::field::content_type, "application/json");
        res->keep_alive(false);
        res->body() = json_error(status, reason);
        res->prepare_payload();
        auto& stream = bb::get_lowest_layer(ws_);
        stream.expires_after(std::chrono::seconds(5));
        http::async_write(stream, *res, [self = shared_from_this(), res](boost::system::error_code, std::size_t) {
            boost::system::error_code ec;
            bb::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_send, ec);
            bb::get_lowest_layer(self->ws_).close();
        });
    }

    void accept(http::request<http::string_body> req) {
        auto& s = srv_.settings;
        bb::get_lowest_layer(ws_).expires_never();  // the websocket stream has its own timeouts
        ws_.next_layer().set_owner(weak_from_this());
        websocket::stream_base::timeout t{};
        t.handshake_timeout = s.handshake_timeout;
        t.idle_timeout = s.heartbeat_timeout.count() > 0 ? bb::websocket::stream_base::duration(s.heartbeat_timeout)
                                                         : websocket::stream_base::none();
        t.keep_alive_pings = s.keep_alive_pings;
        ws_.set_option(t);
        ws_.read_message_max(s.max_message_bytes);
        // A pong shows a live peer even when it sends no messages (a read-only viewer): tell the
        // Gateway, whose inactivity timeout would otherwise end it. Runs on this session's strand.
        ws_.control_callback([this](websocket::frame_type kind, std::string_view) {
            if (kind != websocket::frame_type::pong) return;
            if (auto gw = srv_.gateway.lock()) gw->touch(id_);
            srv_.metrics.pongs.fetch_add(1, std::memory_order_release);
        });
        std::string chosen;
        if (auto offered = req.find(http::field::sec_websocket_protocol); offered != req.end()) {
            auto list = split_list(std::string_view{offered->value().data(), offered->value().size()});
            for (const auto& want : s.subprotocols) {
                if (std::find(list.begin(), list.end(), want) != list.end()) {
                    chosen = want;
                    break;
                }
            }
        }
        ws_.set_option(websocket::stream_base::decorator(
            [name = s.server_name, chosen](websocket::response_type& res) {
                res.set(http::field::server, name);
                if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
            }));
        ws_.text(true);
        auto held = std::make_shared<http::request<http::string_body>>(std::move(req));
        ws_.async_accept(*held, [self = shared_from_this(), held](boost::system::error_code ec) {
            self->on_accept(ec);
        });
    }

private:
    void on_accept(boost::system::error_code ec) {
        if (ec) return finish(ec);
        bool schedule = false;
        {
            std::lock_guard lk(mu_);
            accepted_ = true;
            if (!queue_.empty() && !write_scheduled_) schedule = write_scheduled_ = true;
        }
        if (schedule) do_write();
        else maybe_close();
        do_read();
    }

    void do_read() {
        ws_.async_read(rbuf_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }

    void on_read(boost::system::error_code ec) {
        if (ec) return finish(ec);
        if (auto gw = srv_.gateway.lock()) {
            if (!ws_.got_text()) {
                // The protocol is JSON text; Beast has validated UTF-8 only for text frames.
                gw->send_error(id_, 400, "binary frames are not supported");
            } else {
                auto data = rbuf_.cdata();
                gw->on_message(id_, std::string_view{static_cast<const char*>(data.data()), data.size()});
            }
        }
        rbuf_.consume(rbuf_.size());
        // An idle connection should not keep the buffer of its largest message.
        if (rbuf_.capacity() > 16 * 1024) rbuf_.shrink_to_fit();
        do_read();
    }

    // Strand only. Writes queued frames; when several are waiting, they are written as one batch:
    // each frame goes through the websocket stream into the corked next layer, and one socket
    // write sends them all.
    void do_write() {
        if (writing_ || close_started_) return;
        {
            std::lock_guard lk(mu_);
            if (queue_.empty()) {
                write_scheduled_ = false;
            } else {
                const std::size_t max_frames = srv_.settings.coalesce_writes ? srv_.settings.max_batch_frames : 1;
                std::size_t bytes = 0;
                std::size_t take = 0;
                while (take < queue_.size() && take < max_frames &&
                       (take == 0 || bytes + queue_[take]->size() <= srv_.settings.max_batch_bytes)) {
                    bytes += queue_[take]->size();
                    ++take;
                }
                if (take == queue_.size() && batch_.capacity() <= queue_.capacity()) {
                    batch_.swap(queue_);
                } else {
                    batch_.assign(std::make_move_iterator(queue_.begin()),
                                  std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(take)));
                    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
                }
            }
        }
        if (batch_.empty()) return maybe_close();
        writing_ = true;
        batch_pos_ = 0;
        if (batch_.size() > 1) {
            srv_.coalesced.fetch_add(batch_.size(), std::memory_order_relaxed);
            ws_.next_layer().cork();
        }
        write_next();
    }

    void write_next() {
        const Payload& frame = batch_[batch_pos_];
        ws_.async_write(net::buffer(*frame), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            if (ec) return self->write_failed();
            if (++self->batch_pos_ < self->batch_.size()) return self->write_next();
            if (self->batch_.size() == 1) return self->batch_done();
            self->ws_.next_layer().uncork([self](boost::system::error_code ec2) {
                if (ec2) return self->write_failed();
                self->batch_done();
            });
        });
    }

    void batch_done() {
        batch_.clear();
        writing_ = false;
        do_write();
    }

    void write_failed() {
        // The read side reports the end of the connection; stop writing.
        batch_.clear();
        writing_ = false;
        std::lock_guard lk(mu_);
        closing_ = true;
        queue_.clear();
    }

    // Strand only. Starts the close handshake once the queue has been flushed.
    void maybe_close() {
        if (!pending_close_ || close_started_ || writing_) return;
        {
            std::lock_guard lk(mu_);
            if (!accepted_ || !queue_.empty()) {
                if (accepted_ && !write_scheduled_) {
                    write_scheduled_ = true;
                    net::post(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
                }
                return;
            }
        }
        close_started_ = true;
        ws_.async_close(*pending_close_, [self = shared_from_this()](boost::system::error_code) {
            // The pending read completes with websocket::error::closed (or a timeout) and finishes.
        });
    }

    void finish(boost::system::error_code ec) {
        {
            std::lock_guard lk(mu_);
            closing_ = true;
            queue_.clear();
        }
        release_slot();
        srv_.erase(id_, this);
        auto gw = srv_.gateway.lock();
        if (!gw) return;
        if (ec == websocket::error::message_too_big) {
            // Beast has already sent close 1009.
            gw->end(id_, EndReason::policy, "message too big");
        } else if (ec == bb::error::timeout && !close_started_) {
            gw->end(id_, EndReason::heartbeat, "no traffic");
        } else {
            gw->on_disconnect(id_);
        }
    }

    Server::Impl& srv_;
    websocket::stream<detail::CorkStream> ws_;
    ConnectionId id_;
    bb::flat_buffer rbuf_;
    std::vector<Payload> batch_;  // strand only: frames of the current corked write
    std::size_t batch_pos_ = 0;

    std::mutex mu_;
    std::vector<Payload> queue_;  // not a deque: an empty vector costs no heap per idle connection
    bool accepted_ = false;
    bool write_scheduled_ = false;
    bool closing_ = false;
    bool overflow_ending_ = false;

    // strand only
    bool writing_ = false;
    bool close_started_ = false;
    std::unique_ptr<websocket::close_reason> pending_close_;  // heap: a close_reason is ~130 bytes

    std::string slot_address_;
    std::atomic<bool> slot_held_{false};
};

void Server::Impl::schedule_write(std::shared_ptr<WsSession> s) {
    if (settings.threads > 1) {
        auto ex = s->executor();
        net::post(ex, [s = std::move(s)] { s->start_write(); });
        return;
    }
    bool post = false;
    {
        std::lock_guard lk(dirty_mu);
        dirty.push_back(std::move(s));
        if (!flush_posted) post = flush_posted = true;
    }
    // Two hops: the first lets read completions already in the reactor run (more publishes
    // queue more frames on the same connections), the second writes them together.
    if (post) net::post(ioc, [this] { net::post(ioc, [this] { flush_dirty(); }); });
}

void Server::Impl::flush_dirty() {
    std::vector<std::shared_ptr<WsSession>> batch;
    {
        std::lock_guard lk(dirty_mu);
        batch.swap(dirty);
        flush_posted = false;
    }
    // One io thread: nothing else runs now, so every session's strand is free.
    for (auto& s : batch) s->start_write();
}

void Server::Impl::erase(const ConnectionId& id, const WsSession* s) {
    std::unique_lock lk(sessions_mu);
    auto it = sessions.find(id);
    if (it != sessions.end() && it->second.get() == s) sessions.erase(it);
    lk.unlock();
    state_cv.notify_all();
}

// One HTTP connection: routes, static files, and the upgrade hand-off.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    HttpSession(Server::Impl& srv, tcp::socket&& socket) : srv_(srv), stream_(std::move(socket)) {}

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
    }

private:
    void do_read() {
        parser_.emplace();
        detail::limit_parser(*parser_, srv_.settings);
        stream_.expires_after(std::chrono::seconds(30));
        http::async_read(stream_, buf_, *parser_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }

    void on_read(boost::system::error_code ec) {
        if (ec == http::error::end_of_stream) return shutdown();
        if (ec) {
            const int status = detail::status_for_read_error(ec);
            if (status == 0) return;
            if (status == 431) srv_.metrics.header_too_large.fetch_add(1, std::memory_order_relaxed);
            if (status == 400) srv_.metrics.bad_requests.fetch_add(1, std::memory_order_relaxed);
            const char* reason = status == 413 ? "body too large"
                                 : status == 431 ? "request header fields too large"
                                                 : "bad request";
            // The rest of the request was not read: answer and close.
            return write(HttpResponse::json(status, json_error(status, reason)), 11, false);
        }
        auto req = parser_->release();
        if (websocket::is_upgrade(req)) return upgrade(std::move(req));

        HttpRequest hr = detail::to_http_request(req, remote_ip(stream_.socket()));
        HttpResponse r = detail::route_request(srv_.routes, srv_.settings, hr);
        write(r, req.version(), req.keep_alive(), req.method() == http::verb::head);
    }

    void write(const HttpResponse& r, unsigned version, bool keep_alive, bool head = false) {
        auto res = std::make_shared<http::response<http::string_body>>(
            detail::make_response(r, srv_.settings, version, keep_alive, head));
        http::async_write(stream_, *res, [self = shared_from_this(), res](boost::system::error_code ec, std::size_t) {
            if (ec) return;
            if (!res->keep_alive()) return self->shutdown();
            self->do_read();
        });
    }

    void upgrade(http::request<http::string_body> req) {
        ConnectRequest cr;
        detail::split_target(std::string_view{req.target().data(), req.target().size()}, cr.path, cr.query);
        if (cr.path != srv_.settings.ws_path) {
            return write(HttpResponse::json(404, json_error(404, "not_found")), req.version(), false);
        }
        cr.headers = lower_headers(req);
        cr.source_ip = remote_ip(stream_.socket());
        if (auto* ua = cr.header("user-agent")) cr.user_agent = *ua;
        // The token convention for clients that cannot set headers: `Sec-WebSocket-Protocol:
        // wsgate, <token>`; the token is the entry after the first accepted name, and only that
        // name is echoed. An offer without an accepted name (a bare token) is refused here: no
        // name could be echoed, and a browser fails such a handshake after the server accepted it.
        if (auto* proto = cr.header("sec-websocket-protocol")) {
            auto list = split_list(*proto);
            const auto& known = srv_.settings.subprotocols;
            auto name = std::find_if(list.begin(), list.end(), [&](const std::string& e) {
                return std::find(known.begin(), known.end(), e) != known.end();
            });
            if (name == list.end()) {
                return write(HttpResponse::json(400, json_error(400, "unsupported_subprotocol")), req.version(), false);
            }
            if (std::next(name) != list.end() && !cr.query_param("token")) cr.query["token"] = *std::next(name);
        }
        // The caps come before the token check: a full node spends nothing on verifying it.
        switch (srv_.take_slot(cr.source_ip)) {
            case Server::Impl::Refusal::node_cap:
                srv_.metrics.refused_node_cap.fetch_add(1, std::memory_order_relaxed);
                return write(HttpResponse::json(503, json_error(503, "server_full")), req.version(), false);
            case Server::Impl::Refusal::address_cap:
                srv_.metrics.refused_address_cap.fetch_add(1, std::memory_order_relaxed);
                return write(HttpResponse::json(503, json_error(503, "too_many_connections_from_address")),
                             req.version(), false);
            case Server::Impl::Refusal::none: break;
        }
        cr.connection_id = make_connection_id();

        auto gw = srv_.gateway.lock();
        auto session = std::make_shared<WsSession>(srv_, std::move(stream_), cr.connection_id);
        session->hold_slot(cr.source_ip);
        if (!gw) return session->deny(503, "not_ready", req.version());
        // Register the queue first: the Gateway may publish to the id before on_connect returns.
        {
            std::unique_lock lk(srv_.sessions_mu);
            srv_.sessions[cr.connection_id] = session;
        }
        ConnectResult result = gw->on_connect(cr);
        if (!result.accepted) {
            srv_.erase(cr.connection_id, session.get());
            int status = result.status >= 400 && result.status < 600 ? result.status : 401;
            return session->deny(status, result.reason.empty() ? "unauthorized" : result.reason, req.version());
        }
        if (result.id != cr.connection_id) {
            std::unique_lock lk(srv_.sessions_mu);
            srv_.sessions.erase(cr.connection_id);
            srv_.sessions[result.id] = session;
            session->set_id(result.id);
        }
        session->accept(std::move(req));
    }

    void shutdown() {
        boost::system::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }

    Server::Impl& srv_;
    bb::tcp_stream stream_;
    bb::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
};

void Server::Impl::do_accept() {
    // One io thread needs no strands: nothing runs concurrently, and a strand per connection
    // would cost memory and a dispatch per handler.
    auto ex = settings.threads > 1 ? net::any_io_executor(net::make_strand(ioc)) : net::any_io_executor(ioc.get_executor());
    acceptor.async_accept(ex, [this](boost::system::error_code ec, tcp::socket socket) {
        on_accept(ec, std::move(socket));
    });
}

void Server::Impl::on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (!accepting.load()) return;
    if (!ec) {
        accept_delay = std::chrono::milliseconds{0};
        boost::system::error_code nd;
        socket.set_option(tcp::no_delay(true), nd);
        std::make_shared<HttpSession>(*this, std::move(socket))->run();
        return do_accept();
    }
    if (ec == net::error::operation_aborted) return;
    metrics.accept_errors.fetch_add(1, std::memory_order_relaxed);
    // A peer that gave up before accept() says nothing about this process: accept the next one.
    if (ec == net::error::connection_aborted || ec == net::error::connection_reset) return do_accept();
    // Out of descriptors (EMFILE/ENFILE) or kernel memory: an immediate retry fails the same way
    // and spins a core. Wait, doubling the delay; waiting clients stay in the listen backlog and
    // are accepted once descriptors are free again.
    accept_delay = accept_delay.count() == 0 ? settings.accept_retry_min
                                             : std::min(accept_delay * 2, settings.accept_retry_max);
    accept_delay = std::max(accept_delay, std::chrono::milliseconds{1});
    accept_timer.expires_after(accept_delay);
    accept_timer.async_wait([this](boost::system::error_code wait_ec) {
        if (wait_ec || !accepting.load()) return;
        do_accept();
    });
}

Server::Impl::Refusal Server::Impl::take_slot(const std::string& address) {
    std::lock_guard lk(caps_mu);
    if (settings.max_connections > 0 && open_sessions >= settings.max_connections) return Refusal::node_cap;
    auto& n = open_per_address[address];
    if (settings.max_connections_per_address > 0 && n >= settings.max_connections_per_address) {
        if (n == 0) open_per_address.erase(address);
        return Refusal::address_cap;
    }
    ++n;
    ++open_sessions;
    return Refusal::none;
}

void Server::Impl::release_slot(const std::string& address) {
    std::lock_guard lk(caps_mu);
    --open_sessions;
    auto it = open_per_address.find(address);
    if (it != open_per_address.end() && --it->second == 0) open_per_address.erase(it);
}

Server::Server(ServerSettings settings) : impl_(std::make_shared<Impl>(std::move(settings))) {}

Server::~Server() {
    try {
        stop();
    } catch (...) {
    }
}

void Server::attach(const std::shared_ptr<Gateway>& gateway) { impl_->gateway = gateway; }

void Server::route(std::string method, std::string path, HttpHandler handler) {
    impl_->routes[method + " " + path] = std::move(handler);
}

const ServerSettings& Server::settings() const noexcept { return impl_->settings; }

void Server::start() {
    auto& im = *impl_;
    {
        std::lock_guard lk(im.state_mu);
        if (im.started) return;
        im.started = true;
    }
    tcp::endpoint ep{net::ip::make_address(im.settings.address), im.settings.port};
    im.acceptor.open(ep.protocol());
    im.acceptor.set_option(net::socket_base::reuse_address(true));
    im.acceptor.bind(ep);
    im.acceptor.listen(net::socket_base::max_listen_connections);
    im.bound_port = im.acceptor.local_endpoint().port();
    im.accepting = true;
    net::dispatch(im.acceptor.get_executor(), [&im] { im.do_accept(); });
    for (std::size_t i = 0; i < std::max<std::size_t>(1, im.settings.threads); ++i) {
        im.threads.emplace_back([&im] {
            for (;;) {
                try {
                    im.ioc.run();
                    return;
                } catch (...) {
                    // A handler threw: keep serving the other connections.
                }
            }
        });
    }
}

unsigned short Server::port() const noexcept { return impl_->bound_port.load(); }

void Server::wait() {
    std::unique_lock lk(impl_->state_mu);
    impl_->state_cv.wait(lk, [&] { return impl_->stopped || !impl_->started; });
}

void Server::stop() {
    auto& im = *impl_;
    {
        std::unique_lock lk(im.state_mu);
        if (!im.started || im.stopped) return;
        if (im.stopping) {
            im.state_cv.wait(lk, [&] { return im.stopped; });
            return;
        }
        im.stopping = true;
    }
    im.accepting = false;
    net::post(im.acceptor.get_executor(), [&im] {
        boost::system::error_code ec;
        im.acceptor.close(ec);
        im.accept_timer.cancel();
    });
    std::vector<ConnectionId> ids;
    {
        std::shared_lock lk(im.sessions_mu);
        for (const auto& kv : im.sessions) ids.push_back(kv.first);
    }
    auto gw = im.gateway.lock();
    for (const auto& id : ids) {
        if (gw) gw->end(id, EndReason::shutdown, "server shutdown");
        close(id, CloseCode::going_away, "server shutdown");  // ids the Gateway did not know yet
    }
    gw.reset();
    {
        std::unique_lock lk(im.sessions_mu);
        auto deadline = std::chrono::steady_clock::now() + im.settings.shutdown_timeout;
        while (!im.sessions.empty() && std::chrono::steady_clock::now() < deadline) {
            lk.unlock();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            lk.lock();
        }
    }
    im.ioc.stop();
    for (auto& t : im.threads) {
        if (t.joinable()) t.join();
    }
    {
        std::unique_lock lk(im.sessions_mu);
        im.sessions.clear();
    }
    {
        std::lock_guard lk(im.state_mu);
        im.stopped = true;
    }
    im.state_cv.notify_all();
}

std::size_t Server::connection_count() const {
    std::shared_lock lk(impl_->sessions_mu);
    return impl_->sessions.size();
}

std::uint64_t Server::dropped_frames() const noexcept { return impl_->dropped.load(); }

std::uint64_t Server::coalesced_frames() const noexcept { return impl_->coalesced.load(); }

const ServerMetrics& Server::metrics() const noexcept { return impl_->metrics; }

std::string Server::prometheus_text() const {
    const auto& m = impl_->metrics;
    std::string out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out += std::string{"# HELP wsgate_"} + name + ' ' + help + "\n# TYPE wsgate_" + name + " counter\nwsgate_" +
               name + ' ' + std::to_string(v) + '\n';
    };
    auto get = [](const ServerMetrics::Counter& c) { return c.load(std::memory_order_relaxed); };
    counter("accept_errors_total", "Failed accept() calls (out of descriptors, ...).", get(m.accept_errors));
    out += "# HELP wsgate_upgrades_refused_total WebSocket upgrades answered 503 by a connection cap.\n"
           "# TYPE wsgate_upgrades_refused_total counter\n"
           "wsgate_upgrades_refused_total{reason=\"node_cap\"} " + std::to_string(get(m.refused_node_cap)) + "\n"
           "wsgate_upgrades_refused_total{reason=\"address_cap\"} " + std::to_string(get(m.refused_address_cap)) + "\n";
    counter("http_header_too_large_total", "Requests answered 431.", get(m.header_too_large));
    counter("http_bad_requests_total", "Requests that did not parse, answered 400.", get(m.bad_requests));
    counter("pongs_total", "Pongs received from clients.", get(m.pongs));
    counter("dropped_frames_total", "Frames dropped because a connection's queue was full.", dropped_frames());
    counter("coalesced_frames_total", "Frames sent in a socket write shared with other frames.", coalesced_frames());
    return out;
}

SendStatus Server::send(const ConnectionId& id, const Payload& payload) {
    if (!payload) return SendStatus::error;
    auto s = impl_->find(id);
    if (!s) return SendStatus::gone;
    return s->enqueue(payload);
}

void Server::send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) {
    // enqueue() only locks the session's queue and posts; holding the table lock is cheaper
    // than copying every session pointer out.
    std::shared_lock lk(impl_->sessions_mu);
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) {
        if (!payload) {
            out[i] = SendStatus::error;
            continue;
        }
        auto it = impl_->sessions.find(ids[i]);
        out[i] = it == impl_->sessions.end() ? SendStatus::gone : it->second->enqueue(payload);
    }
}

void Server::close(const ConnectionId& id, CloseCode code, std::string_view reason) {
    if (auto s = impl_->find(id)) s->close(code, reason);
}

}  // namespace wsgate::beast
