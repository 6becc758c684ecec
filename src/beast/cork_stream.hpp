#pragma once
// CorkStream: the next layer under each server WebSocket stream, a TCP socket that can be corked
// so that several WebSocket frames leave in one socket write. Internal to wsgate::beast.
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wsgate::beast::detail {

namespace net = boost::asio;
namespace bb = boost::beast;

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
 * The next layer under each WebSocket stream: a TCP socket that can be corked. While corked,
 * frames the websocket stream writes are gathered in memory and their writes complete at once;
 * uncork() sends everything gathered with one socket write. Writes arriving while a flush is on
 * the wire wait their turn (in order) and complete when their bytes were written.
 * Used on the connection's strand only.
 */
class CorkStream {
public:
    using socket_type = net::ip::tcp::socket;
    using executor_type = socket_type::executor_type;

    // A plain socket, not a tcp_stream: the websocket stream keeps its own timer for handshake
    // and idle timeouts, and a tcp_stream's two timers would cost every idle connection.
    explicit CorkStream(socket_type&& s);
    explicit CorkStream(bb::tcp_stream&& s);

    executor_type get_executor() noexcept { return s_.get_executor(); }
    socket_type& next_layer() noexcept { return s_; }
    const socket_type& next_layer() const noexcept { return s_; }

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

    /// Starts gathering: writes complete at once and their bytes wait for uncork().
    void cork() noexcept { corked_ = true; }
    /// True while corked.
    [[nodiscard]] bool corked() const noexcept { return corked_; }

    /// Ends a cork: sends what was gathered, then calls `done(ec)` (on this strand).
    void uncork(std::function<void(bb::error_code)> done);

    /// Runs `fn` once nothing is buffered or on the wire (the close handshake's teardown).
    void when_drained(std::function<void(bb::error_code)> fn);

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

    void flush();

    void finish_round(bb::error_code ec);

    socket_type s_;
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


}  // namespace wsgate::beast::detail
