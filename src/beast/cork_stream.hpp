#pragma once
// CorkStream: the next layer under each server WebSocket stream and the one writer of its TCP
// socket. Prepared data frames (frame.hpp) and Beast's own writes (handshake answer, control
// frames, compressed messages) queue here in order and leave in as few socket writes as
// possible. Internal to wsgate::beast.
#include "frame.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wsgate::beast::detail {

namespace net = boost::asio;
namespace bb = boost::beast;

/**
 * Memory for the socket write operations: blocks recycled through a free list per thread, so
 * that a connection's write costs no heap allocation once its thread has written as many
 * connections at once before. (Asio's own cache keeps two blocks per thread; a fan-out has a
 * write pending on every connection it reached.)
 */
class WriteOpMemory {
public:
    static constexpr std::size_t block_size = 256;

    static void* allocate(std::size_t n) {
        auto& free = list();
        if (n > block_size || free.empty()) return ::operator new(std::max(n, block_size));
        void* p = free.back();
        free.pop_back();
        return p;
    }
    static void deallocate(void* p, std::size_t n) noexcept {
        auto& free = list();
        if (n <= block_size && free.size() < max_free && free.size() < free.capacity()) {
            free.push_back(p);  // within capacity: cannot throw
            return;
        }
        if (n <= block_size && free.size() < max_free) {
            try {
                free.push_back(p);
                return;
            } catch (...) {
            }
        }
        ::operator delete(p);
    }

private:
    static constexpr std::size_t max_free = 1 << 16;  // at most 16 MiB kept per thread
    struct FreeList {
        std::vector<void*> blocks;
        FreeList() = default;
        FreeList(const FreeList&) = delete;
        FreeList& operator=(const FreeList&) = delete;
        ~FreeList() {
            for (void* p : blocks) ::operator delete(p);
        }
    };
    static std::vector<void*>& list() noexcept {
        thread_local FreeList l;
        return l.blocks;
    }
};

/// The allocator a socket write's handler carries (see WriteOpMemory).
template <class T>
struct WriteOpAllocator {
    using value_type = T;
    WriteOpAllocator() noexcept = default;
    template <class U>
    WriteOpAllocator(const WriteOpAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "over-aligned write operation");
        return static_cast<T*>(WriteOpMemory::allocate(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { WriteOpMemory::deallocate(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const WriteOpAllocator<U>&) const noexcept { return true; }
};

// A completion of one of Beast's writes, waiting inside CorkStream (move-only, type-erased).
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
 * The next layer under each WebSocket stream, and the only thing that writes its socket.
 *
 * Two kinds of bytes queue here, in the order they arrive:
 * - prepared data frames (add_frame): whole frames, shared with other connections, never copied;
 * - Beast's writes (async_write_some): the handshake answer, pings, pongs, close frames, and
 *   the frames of a connection that compresses. They are copied and complete once written;
 *   while corked they complete at once and wait for uncork().
 * Everything queued leaves with one gathering socket write (writev) per round; what arrives
 * during a round waits for the next. A frame is never split by another write, so control
 * frames land between whole data frames (RFC 6455 §5.4). Once Beast has queued a close frame,
 * no data frame is added after it (§5.5.1).
 *
 * The connection hears through its Listener when a round that carried its data (frames, or
 * writes gathered while corked) was written. Used on the connection's io thread only.
 */
class CorkStream {
public:
    using socket_type = net::ip::tcp::socket;
    using executor_type = socket_type::executor_type;

    /// Told when the data the connection queued (frames, corked writes) has been written.
    struct Listener {
        virtual void frames_written(bb::error_code ec) = 0;

    protected:
        ~Listener() = default;
    };

    // A plain socket, not a tcp_stream: a tcp_stream's two timers would cost every idle
    // connection (the websocket stream keeps the handshake timer).
    explicit CorkStream(socket_type&& s);
    explicit CorkStream(bb::tcp_stream&& s);

    executor_type get_executor() noexcept { return s_.get_executor(); }
    socket_type& next_layer() noexcept { return s_; }
    const socket_type& next_layer() const noexcept { return s_; }

    /// Something that keeps the owner alive while a round is on the wire, and who to tell.
    void set_owner(std::weak_ptr<void> owner, Listener* listener = nullptr) {
        owner_ = std::move(owner);
        listener_ = listener;
    }

    template <class MutableBufferSequence, class ReadHandler>
    auto async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
        return s_.async_read_some(buffers, std::forward<ReadHandler>(handler));
    }

    // Beast's writes: copied into the queue (one of Beast's writes always starts a frame, or is
    // the handshake answer, since each completes whole).
    template <class ConstBufferSequence, class WriteHandler>
    auto async_write_some(const ConstBufferSequence& buffers, WriteHandler&& token) {
        return net::async_initiate<WriteHandler, void(bb::error_code, std::size_t)>(
            [this](auto handler, const ConstBufferSequence& bufs) {
                using H = std::decay_t<decltype(handler)>;
                if (error_) {
                    PendingHandler<H>(std::move(handler), 0).complete(error_, 0);
                    return;
                }
                auto bytes = copy_of(bufs);
                const std::size_t n = bytes->bytes.size();
                // RFC 6455 §5.2: FIN with opcode 8 (close) is 0x88; the handshake answer starts with 'H'.
                if (n > 0 && static_cast<unsigned char>(bytes->bytes[0]) == 0x88) close_queued_ = true;
                if (n > 0) pending_.frames.push_back(std::move(bytes));
                if (corked_) {
                    pending_.gathered = true;
                    PendingHandler<H>(std::move(handler), n).complete({}, n);
                    return;
                }
                pending_.waiters.push_back(std::make_unique<PendingHandler<H>>(std::move(handler), n));
                if (!flushing_) flush();
            },
            token, buffers);
    }

    /// Queues a prepared frame (dropped after an error or once a close frame is queued).
    void add_frame(Frame f);

    /// Starts gathering: Beast's writes complete at once and wait for uncork().
    void cork() noexcept { corked_ = true; }
    /// True while corked.
    [[nodiscard]] bool corked() const noexcept { return corked_; }

    /**
     * Ends a cork and sends everything queued. The Listener hears once it was written, or at
     * once with the error when nothing more can be sent (a failed socket, a close frame queued:
     * then `net::error::operation_aborted`).
     */
    void uncork();
    /// uncork(), then `done(ec)` once nothing is queued or on the wire.
    void uncork(std::function<void(bb::error_code)> done);

    /// Runs `fn` once nothing is queued or on the wire (the close handshake's teardown).
    void when_drained(std::function<void(bb::error_code)> fn);

    /// A close frame has been queued: no data frame follows it.
    [[nodiscard]] bool close_queued() const noexcept { return close_queued_; }

private:
    // What one socket write (or several, after a partial write) sends: whole frames, in order,
    // held until written (Beast's bytes as frames of their own).
    struct Round {
        std::vector<Frame> frames;
        std::vector<std::unique_ptr<Pending>> waiters;  // Beast's writes completing with the round
        bool gathered = false;                          // carries the connection's data
        [[nodiscard]] bool empty() const noexcept { return frames.empty() && waiters.empty(); }
        void clear() noexcept;  // keeps the frames' capacity for the next round
    };

    // Beast's bytes, copied (Beast may reuse its buffers once the write completes).
    template <class ConstBufferSequence>
    static std::shared_ptr<WireFrame> copy_of(const ConstBufferSequence& bufs) {
        auto f = std::make_shared<WireFrame>();
        f->bytes.reserve(net::buffer_size(bufs));
        for (auto it = net::buffer_sequence_begin(bufs); it != net::buffer_sequence_end(bufs); ++it) {
            net::const_buffer b = *it;
            f->bytes.append(static_cast<const char*>(b.data()), b.size());
        }
        return f;
    }

    void flush();
    void write_some();
    void on_written(bb::error_code ec, std::size_t n);
    void fail_pending(bb::error_code ec);
    void finish_round(bb::error_code ec);

    socket_type s_;
    std::weak_ptr<void> owner_;
    Listener* listener_ = nullptr;
    Round pending_;   // queued for the next socket write
    Round inflight_;  // on the wire
    std::vector<net::const_buffer> buffers_;  // inflight_'s bytes not yet written
    std::size_t written_ = 0;                 // of buffers_
    std::vector<std::function<void(bb::error_code)>> after_flush_;
    bb::error_code error_;
    bool corked_ = false;
    bool flushing_ = false;
    bool close_queued_ = false;
};

// Closing the WebSocket tears down the TCP connection only after queued frames went out.
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
