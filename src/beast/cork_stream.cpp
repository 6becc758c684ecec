// CorkStream's rounds: everything queued leaves with one gathering socket write.
#include "cork_stream.hpp"

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/error.hpp>

#include <span>

namespace wsgate::beast::detail {

CorkStream::CorkStream(socket_type&& s) : s_(std::move(s)) {}

CorkStream::CorkStream(bb::tcp_stream&& s) : s_(s.release_socket()) {}

void CorkStream::Round::clear() noexcept {
    // The frames' list keeps its capacity for the next round; Beast's own writes are rare, and an
    // idle connection should not hold their list.
    frames.clear();
    waiters.clear();
    waiters.shrink_to_fit();
    gathered = false;
}

void CorkStream::add_frame(Frame f) {
    if (error_ || close_queued_ || !f || f->bytes.empty()) return;
    pending_.frames.push_back(std::move(f));
    pending_.gathered = true;
}

void CorkStream::uncork() {
    corked_ = false;
    if (error_ || close_queued_) {
        // Nothing more of the connection's goes out: its frames were not queued. A queued close
        // frame (and what Beast queued before it) still leaves.
        const bb::error_code ec = error_ ? error_ : bb::error_code{net::error::operation_aborted};
        if (error_) fail_pending(error_);
        else pending_.gathered = false;
        if (listener_) listener_->frames_written(ec);
        if (!flushing_) {
            if (pending_.empty()) finish_round(error_);
            else flush();
        }
        return;
    }
    if (flushing_) return;  // the next round takes it
    if (pending_.empty()) {
        const bool gathered = pending_.gathered;
        pending_.gathered = false;
        if (gathered && listener_) listener_->frames_written({});
        finish_round({});
        return;
    }
    flush();
}

void CorkStream::uncork(std::function<void(bb::error_code)> done) {
    after_flush_.push_back(std::move(done));
    uncork();
}

void CorkStream::when_drained(std::function<void(bb::error_code)> fn) {
    if (!flushing_ && pending_.empty()) {
        fn(error_);
        return;
    }
    after_flush_.push_back(std::move(fn));
}

void CorkStream::flush() {
    flushing_ = true;
    std::swap(pending_, inflight_);  // pending_ is now the cleared previous round, capacity kept
    buffers_.clear();
    for (const auto& f : inflight_.frames) buffers_.emplace_back(f->bytes.data(), f->bytes.size());
    written_ = 0;
    write_some();
}

void CorkStream::write_some() {
    // Asio gathers up to 64 buffers per writev; a partial write continues where it stopped.
    const std::span<const net::const_buffer> rest{buffers_.data() + written_, buffers_.size() - written_};
    s_.async_write_some(rest, net::bind_allocator(WriteOpAllocator<void>{}, [this, keep = owner_.lock()](
                                                       bb::error_code ec, std::size_t n) { on_written(ec, n); }));
}

void CorkStream::on_written(bb::error_code ec, std::size_t n) {
    if (!ec) {
        // Drop the buffers written whole, trim the one written in part.
        while (n > 0 && written_ < buffers_.size()) {
            auto& b = buffers_[written_];
            if (n >= b.size()) {
                n -= b.size();
                ++written_;
            } else {
                b += n;
                n = 0;
            }
        }
        if (written_ < buffers_.size()) return write_some();
    }
    flushing_ = false;
    if (ec) error_ = ec;
    for (auto& w : inflight_.waiters) w->complete(ec, 0);
    // The connection hears of its data in this round, or, after an error, of its data that was
    // waiting for the next one (it is dropped).
    const bool gathered = inflight_.gathered || (ec && pending_.gathered);
    inflight_.clear();
    if (ec) fail_pending(ec);
    else if (!pending_.empty() && !corked_) flush();
    // May queue the connection's next frames (and uncork): they join pending_ behind this.
    if (gathered && listener_) listener_->frames_written(ec);
    if (!flushing_ && (pending_.empty() || ec)) finish_round(ec);
}

void CorkStream::fail_pending(bb::error_code ec) {
    for (auto& w : pending_.waiters) w->complete(ec, 0);
    pending_.clear();
}

void CorkStream::finish_round(bb::error_code ec) {
    if (after_flush_.empty()) return;
    auto callbacks = std::move(after_flush_);
    after_flush_.clear();
    for (auto& f : callbacks) f(ec ? ec : error_);
}

}  // namespace wsgate::beast::detail
