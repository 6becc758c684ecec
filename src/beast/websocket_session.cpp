// WsSession: handshake, read loop, queue, batched writes, close. See websocket_session.hpp.
#include "websocket_session.hpp"

#include "http_handling.hpp"

#include <wsgate/gateway.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace wsgate::beast {

using detail::json_error;
using detail::split_list;

void WsSession::hold_slot(std::string address) {
    slot_address_ = std::move(address);
    slot_held_ = true;
}

SendStatus WsSession::enqueue(const detail::Frame& f) {
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
        queue_.push_back(f);
        if (accepted_ && !write_scheduled_) schedule = write_scheduled_ = true;
    }
    if (schedule) srv_.schedule_write(worker_, shared_from_this());
    return SendStatus::ok;
}

void WsSession::close(CloseCode code, std::string_view reason) {
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

void WsSession::deny(int status, const std::string& reason, unsigned version) {
    release_slot();
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version);
    res->set(http::field::server, srv_.settings.server_name);
    res->set(http::field::content_type, "application/json");
    res->keep_alive(false);
    res->body() = json_error(status, reason);
    res->prepare_payload();
    // The websocket stream never ran: the answer goes out on the socket, under its own timeout.
    auto stream = std::make_shared<bb::tcp_stream>(std::move(ws_.next_layer().next_layer()));
    stream->expires_after(std::chrono::seconds(5));
    http::async_write(*stream, *res, [self = shared_from_this(), res, stream](boost::system::error_code, std::size_t) {
        boost::system::error_code ec;
        stream->socket().shutdown(tcp::socket::shutdown_send, ec);
        stream->close();
    });
}

void WsSession::accept(http::request<http::string_body> req) {
    auto& s = srv_.settings;
    ws_.next_layer().set_owner(weak_from_this(), this);
    websocket::stream_base::timeout t{};
    t.handshake_timeout = s.handshake_timeout;
    // Beast's own idle timer stays off: the server's heartbeat sweep pings and ends silent peers
    // (see Server::Impl::heartbeat_sweep). The handshake timeout also bounds the close handshake.
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.read_message_max(s.max_message_bytes);
    // A pong shows a live peer even when it sends no messages (a read-only viewer): tell the
    // Gateway, whose inactivity timeout would otherwise end it. Runs on this session's io thread.
    ws_.control_callback([this](websocket::frame_type kind, std::string_view) {
        saw_traffic();
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
    // Negotiated only with clients that offer it. Beast allocates the compressor's buffers on the
    // first compressed message and the decompressor's window on the first compressed read.
    if (s.deflate.enabled) ws_.set_option(beast_deflate_options(s.deflate));
    // Beast adds its Sec-WebSocket-Extensions answer before the decorator runs.
    ws_.set_option(websocket::stream_base::decorator(
        [name = s.server_name, chosen, metrics = &srv_.metrics, self = this](websocket::response_type& res) {
            res.set(http::field::server, name);
            if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
            if (res.find(http::field::sec_websocket_extensions) != res.end()) {
                // Compressed messages differ per connection: this one's frames go through Beast.
                self->deflate_ = true;
                metrics->deflate_accepted.fetch_add(1, std::memory_order_relaxed);
            }
        }));
    ws_.text(true);
    auto held = std::make_shared<http::request<http::string_body>>(std::move(req));
    ws_.async_accept(*held, [self = shared_from_this(), held](boost::system::error_code ec) {
        self->on_accept(ec);
    });
}

void WsSession::on_accept(boost::system::error_code ec) {
    if (ec) return finish(ec);
    // The handshake is answered: drop the decorator's captured strings for the connection's life.
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type&) {}));
    saw_traffic();  // the heartbeat starts now
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

void WsSession::do_read() {
    // An idle connection holds no read buffer: the pending read waits for the first byte of the
    // next message in `probe_`, inside this object, and `rbuf_` is allocated only when a message
    // arrives (Beast would otherwise prepare a frame's worth of it for every waiting read). The
    // websocket stream's own state (frame header, UTF-8 check, size limit, control frames) spans
    // both reads.
    ws_.async_read_some(net::mutable_buffer(&probe_, 1),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            self->on_first_byte(ec, n);
                        });
}

void WsSession::on_first_byte(boost::system::error_code ec, std::size_t n) {
    if (ec) return finish(ec);
    saw_traffic();
    ++worker_.reads;
    if (n > 0) {
        auto b = rbuf_.prepare(1);
        *static_cast<char*>(b.data()) = probe_;
        rbuf_.commit(1);
    }
    if (ws_.is_message_done()) return on_read({});
    // The rest of the message, appended to the first byte.
    ws_.async_read(rbuf_, [self = shared_from_this()](boost::system::error_code ec2, std::size_t) {
        self->on_read(ec2);
    });
}

void WsSession::on_read(boost::system::error_code ec) {
    if (ec) return finish(ec);
    saw_traffic();
    ++worker_.reads;
    if (auto gw = srv_.gateway.lock()) {
        if (!ws_.got_text()) {
            // The protocol is JSON text; Beast has validated UTF-8 only for text frames.
            gw->send_error(id_, 400, "binary frames are not supported");
        } else {
            auto data = rbuf_.cdata();
            gw->on_message(id_, std::string_view{static_cast<const char*>(data.data()), data.size()});
        }
    }
    // Released, not kept: the connection is idle until its next message (see do_read).
    rbuf_.clear();
    rbuf_.shrink_to_fit();
    do_read();
}

void WsSession::do_write() {
    if (writing_ || close_started_) return;
    auto& out = ws_.next_layer();
    std::size_t taken = 0;
    {
        std::lock_guard lk(mu_);
        if (queue_.empty()) {
            write_scheduled_ = false;
        } else {
            const std::size_t max_frames = srv_.settings.coalesce_writes ? srv_.settings.max_batch_frames : 1;
            std::size_t bytes = 0;
            while (taken < queue_.size() && taken < max_frames &&
                   (taken == 0 || bytes + queue_[taken]->bytes.size() <= srv_.settings.max_batch_bytes)) {
                bytes += queue_[taken]->bytes.size();
                ++taken;
            }
            const auto first = queue_.begin();
            const auto last = first + static_cast<std::ptrdiff_t>(taken);
            if (deflate_) {
                batch_.assign(std::make_move_iterator(first), std::make_move_iterator(last));
            } else {
                // The frames as they are: the same bytes for every connection (a server's frames
                // carry no mask), queued behind whatever Beast queued (a pong).
                out.cork();
                for (auto it = first; it != last; ++it) out.add_frame(std::move(*it));
            }
            queue_.erase(first, last);
        }
    }
    if (taken == 0) return maybe_close();
    writing_ = true;
    srv_.metrics.data_writes.fetch_add(1, std::memory_order_relaxed);
    if (taken > 1) srv_.coalesced.fetch_add(taken, std::memory_order_relaxed);
    if (deflate_) {
        out.cork();
        batch_pos_ = 0;
        return write_next();
    }
    out.uncork();  // one writev; frames_written() follows
}

void WsSession::write_next() {
    // Compression: Beast frames and compresses the message for this connection, into the cork.
    const auto payload = batch_[batch_pos_]->payload();
    ws_.async_write(net::buffer(payload.data(), payload.size()),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec) return self->write_failed();
                        if (++self->batch_pos_ < self->batch_.size()) return self->write_next();
                        self->ws_.next_layer().uncork();
                    });
}

void WsSession::frames_written(boost::system::error_code ec) {
    if (!writing_) return;  // a round of Beast's own writes gathered while corked
    if (ec) return write_failed();
    batch_done();
}

void WsSession::batch_done() {
    batch_.clear();
    writing_ = false;
    do_write();
}

void WsSession::write_failed() {
    // The read side reports the end of the connection; stop writing.
    batch_.clear();
    writing_ = false;
    std::lock_guard lk(mu_);
    closing_ = true;
    queue_.clear();
}

void WsSession::maybe_close() {
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

void WsSession::finish(boost::system::error_code ec) {
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
    } else if ((heartbeat_expired_ || ec == bb::error::timeout) && !close_started_) {
        gw->end(id_, EndReason::heartbeat, "no traffic");
    } else {
        gw->on_disconnect(id_);
    }
}

WsSession::Heartbeat WsSession::heartbeat_check(std::int64_t now, std::int64_t timeout, bool pings) noexcept {
    const std::int64_t rx = last_rx_.load(std::memory_order_relaxed);
    if (rx == 0 || expiring_.load(std::memory_order_relaxed)) return Heartbeat::none;
    const std::int64_t quiet = now - rx;
    if (quiet >= timeout) return expiring_.exchange(true) ? Heartbeat::none : Heartbeat::expire;
    if (pings && quiet >= timeout / 2 && last_ping_.load(std::memory_order_relaxed) < rx) {
        last_ping_.store(now, std::memory_order_relaxed);
        return Heartbeat::ping;
    }
    return Heartbeat::none;
}

void WsSession::send_heartbeat_ping() {
    if (close_started_ || ping_inflight_) return;
    ping_inflight_ = true;
    srv_.metrics.pings.fetch_add(1, std::memory_order_relaxed);
    ws_.async_ping({}, [self = shared_from_this()](boost::system::error_code) { self->ping_inflight_ = false; });
}

void WsSession::expire_heartbeat() {
    if (close_started_) return;  // the close handshake has its own timeout
    heartbeat_expired_ = true;
    // The pending read fails and finish() ends the connection as EndReason::heartbeat.
    boost::system::error_code ec;
    auto& socket = ws_.next_layer().next_layer();
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
}

void Server::Impl::start_heartbeat() {
    if (settings.heartbeat_timeout.count() <= 0) return;
    // Sixteen looks per timeout (at most one a second): a ping leaves within 1/16 of the timeout
    // after half of it, and a silent peer ends within 1/16 after all of it.
    const auto tick = std::clamp<std::chrono::milliseconds>(settings.heartbeat_timeout / 16, std::chrono::milliseconds(10),
                                                            std::chrono::milliseconds(1000));
    heartbeat_timer.expires_after(tick);
    heartbeat_timer.async_wait([this](boost::system::error_code ec) {
        if (ec || !accepting.load()) return;
        heartbeat_sweep();
        start_heartbeat();
    });
}

void Server::Impl::heartbeat_sweep() {
    const std::int64_t now = WsSession::heartbeat_now();
    const std::int64_t timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(settings.heartbeat_timeout).count();
    std::vector<std::pair<std::shared_ptr<WsSession>, WsSession::Heartbeat>> due;
    {
        std::shared_lock lk(sessions_mu);
        for (const auto& [id, s] : sessions) {
            const auto what = s->heartbeat_check(now, timeout, settings.keep_alive_pings);
            if (what != WsSession::Heartbeat::none) due.emplace_back(s, what);
        }
    }
    for (auto& [s, what] : due) {
        auto ex = s->executor();
        if (what == WsSession::Heartbeat::ping) {
            net::post(ex, [s = std::move(s)] { s->send_heartbeat_ping(); });
        } else {
            net::post(ex, [s = std::move(s)] { s->expire_heartbeat(); });
        }
    }
}

void Server::Impl::schedule_write(Worker& w, std::shared_ptr<WsSession> s) {
    bool post = false;
    {
        std::lock_guard lk(w.dirty_mu);
        w.dirty.push_back(std::move(s));
        if (!w.flush_posted) post = w.flush_posted = true;
    }
    if (!post) return;
    if (settings.flush_delay.count() > 0) {
        // Bursts: the pass waits, and what more publishes queue meanwhile leaves in the same write.
        net::post(w.ioc, [this, &w] {
            w.flush_timer.expires_after(settings.flush_delay);
            w.flush_timer.async_wait([this, &w](boost::system::error_code ec) {
                if (!ec) flush_dirty(w);
            });
        });
        return;
    }
    // Three hops: the first two let reads already in progress finish (a message takes two: its
    // first byte, then the rest; see WsSession::do_read), so more publishes queue more frames on
    // the same connections; the third writes them together, or waits on (settle_pass).
    net::post(w.ioc, [this, &w] {
        w.pass_seen = w.reads;
        w.pass_waits = 0;
        w.pass_due = std::chrono::steady_clock::now();
        net::post(w.ioc, [this, &w] { net::post(w.ioc, [this, &w] { settle_pass(w); }); });
    });
}

void Server::Impl::settle_pass(Worker& w) {
    // While this thread's connections keep reading (publishes waiting in a socket, each read one
    // hop at a time), their frames join the pass; once three hops pass without a read, or the
    // pass has waited Worker::pass_wait_max, it writes.
    if (settings.coalesce_writes && w.reads != w.pass_seen && w.pass_waits < Worker::pass_waits_max &&
        std::chrono::steady_clock::now() - w.pass_due < Worker::pass_wait_max) {
        w.pass_seen = w.reads;
        ++w.pass_waits;
        net::post(w.ioc, [this, &w] { net::post(w.ioc, [this, &w] { net::post(w.ioc, [this, &w] { settle_pass(w); }); }); });
        return;
    }
    flush_dirty(w);
}

void Server::Impl::flush_dirty(Worker& w) {
    {
        std::lock_guard lk(w.dirty_mu);
        w.writing.swap(w.dirty);
        w.flush_posted = false;
    }
    // On w's thread: every session in the pass lives here, so none is busy elsewhere.
    for (auto& s : w.writing) s->start_write();
    w.writing.clear();
}

void Server::Impl::erase(const ConnectionId& id, const WsSession* s) {
    std::unique_lock lk(sessions_mu);
    auto it = sessions.find(id);
    if (it != sessions.end() && it->second.get() == s) sessions.erase(it);
    lk.unlock();
    state_cv.notify_all();
}


}  // namespace wsgate::beast
