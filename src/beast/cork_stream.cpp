// CorkStream's flushing: one socket write for everything gathered while corked.
#include "cork_stream.hpp"

#include <boost/asio/write.hpp>

namespace wsgate::beast::detail {

CorkStream::CorkStream(socket_type&& s) : s_(std::move(s)) {}

CorkStream::CorkStream(bb::tcp_stream&& s) : s_(s.release_socket()) {}

void CorkStream::uncork(std::function<void(bb::error_code)> done) {
    corked_ = false;
    after_flush_.push_back(std::move(done));
    if (!flushing_) {
        if (pending_.empty()) finish_round({});
        else flush();
    }
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

void CorkStream::finish_round(bb::error_code ec) {
    auto callbacks = std::move(after_flush_);
    after_flush_.clear();
    for (auto& f : callbacks) f(ec ? ec : error_);
}

}  // namespace wsgate::beast::detail
