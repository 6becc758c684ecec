// CorkStream (src/beast/cork_stream.hpp) over real loopback TCP sockets: corked writes complete at
// once and reach the peer only on uncork, in order; writes during a flush wait their turn; a dead
// peer is reported; WebSocket frames written corked stay separate messages.
#include "catch.hpp"

#include "cork_stream.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace net = boost::asio;
namespace bb = boost::beast;
using tcp = net::ip::tcp;
using wsgate::beast::detail::CorkStream;

// A connected loopback pair: `cork` writes on the server side, `peer` is a plain client socket.
struct Pair {
    net::io_context ioc;
    tcp::socket peer{ioc};
    std::optional<CorkStream> cork;

    Pair() {
        tcp::acceptor acceptor{ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), 0}};
        peer.connect(acceptor.local_endpoint());
        tcp::socket server{ioc};
        acceptor.accept(server);
        cork.emplace(bb::tcp_stream{std::move(server)});
    }

    // Runs handlers until `done()` or a 5 s deadline; true if `done()`.
    bool run_until(const std::function<bool()>& done) {
        // Generous: a starved machine (sanitizers, parallel builds) moves 64 MiB slowly; a pass
        // returns as soon as the condition holds.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            ioc.restart();
            ioc.run_for(std::chrono::milliseconds(5));
        }
        return done();
    }

    // Runs whatever is ready for a short while (lets the kernel move bytes that were sent).
    void settle() {
        ioc.restart();
        ioc.run_for(std::chrono::milliseconds(50));
    }

    // A write of `text` through the corked stream, recording its completion.
    void write(const std::string& text, std::vector<std::string>& completed, bb::error_code* ec_out = nullptr) {
        cork->async_write_some(net::buffer(text),
                               net::bind_executor(ioc, [&completed, ec_out, text](bb::error_code ec, std::size_t n) {
                                   if (ec_out) *ec_out = ec;
                                   if (!ec && n == text.size()) completed.push_back(text.substr(0, 8));
                               }));
    }

    std::string read_exactly(std::size_t n) {
        std::string out(n, '\0');
        net::read(peer, net::buffer(out));
        return out;
    }
};

}  // namespace

TEST_CASE("an uncorked write goes straight to the socket", "[beast][cork]") {
    Pair p;
    std::vector<std::string> done;
    const std::string text = "hello";
    p.write(text, done);
    REQUIRE(p.run_until([&] { return done.size() == 1; }));
    CHECK(p.read_exactly(5) == "hello");
}

TEST_CASE("corked writes complete at once and reach the peer only on uncork, in order", "[beast][cork]") {
    Pair p;
    std::vector<std::string> done;
    const std::string a = "first-", b = "second-", c = "third";
    p.cork->cork();
    CHECK(p.cork->corked());
    p.write(a, done);
    p.write(b, done);
    p.write(c, done);
    REQUIRE(p.run_until([&] { return done.size() == 3; }));
    p.settle();  // nothing may have been sent while corked
    CHECK(p.peer.available() == 0);

    std::optional<bb::error_code> uncorked;
    p.cork->uncork([&](bb::error_code ec) { uncorked = ec; });
    CHECK_FALSE(p.cork->corked());
    REQUIRE(p.run_until([&] { return uncorked.has_value(); }));
    CHECK_FALSE(*uncorked);
    CHECK(p.read_exactly(a.size() + b.size() + c.size()) == "first-second-third");
}

TEST_CASE("uncork with nothing gathered calls back at once", "[beast][cork]") {
    Pair p;
    p.cork->cork();
    bool called = false;
    p.cork->uncork([&](bb::error_code ec) { called = !ec; });
    CHECK(called);
}

TEST_CASE("a write arriving during a flush waits its turn and completes after it", "[beast][cork]") {
    Pair p;
    std::vector<std::string> done;
    // Larger than the socket buffers: the flush stays on the wire until the peer reads.
    const std::string big(64 * 1024 * 1024, 'x');
    const std::string tail = "tail-after-flush";
    p.cork->cork();
    p.write(big, done);
    REQUIRE(p.run_until([&] { return done.size() == 1; }));
    bool flushed = false;
    p.cork->uncork([&](bb::error_code ec) { flushed = !ec; });
    p.write(tail, done);
    bool drained = false;
    p.cork->when_drained([&](bb::error_code) { drained = true; });
    p.settle();
    CHECK_FALSE(flushed);
    CHECK_FALSE(drained);
    CHECK(done.size() == 1);  // the tail write waits behind the flush

    std::string got;
    std::thread reader([&] { got = p.read_exactly(big.size() + tail.size()); });
    REQUIRE(p.run_until([&] { return flushed && drained && done.size() == 2; }));
    reader.join();
    CHECK(done.back() == "tail-aft");
    CHECK(got.size() == big.size() + tail.size());
    CHECK(got.substr(big.size()) == tail);
    CHECK(got.find_first_not_of('x') == big.size());
}

TEST_CASE("when_drained runs at once when nothing is buffered", "[beast][cork]") {
    Pair p;
    bool ran = false;
    p.cork->when_drained([&](bb::error_code ec) { ran = !ec; });
    CHECK(ran);
}

TEST_CASE("a peer that went away fails the flush and every later corked write", "[beast][cork]") {
    Pair p;
    p.peer.set_option(net::socket_base::linger(true, 0));
    p.peer.close();  // RST: the next writes fail
    std::vector<std::string> done;
    const std::string big(8 * 1024 * 1024, 'y');
    std::optional<bb::error_code> flush_ec;
    // The first writes may still land in the kernel buffer; keep flushing until one fails.
    for (int i = 0; i < 20 && !(flush_ec && *flush_ec); ++i) {
        flush_ec.reset();
        p.cork->cork();
        p.write(big, done);
        p.cork->uncork([&](bb::error_code ec) { flush_ec = ec; });
        REQUIRE(p.run_until([&] { return flush_ec.has_value(); }));
    }
    REQUIRE(flush_ec.has_value());
    CHECK(*flush_ec);

    bb::error_code later;
    std::vector<std::string> none;
    const std::string small = "after the error";
    p.cork->cork();
    p.write(small, none, &later);
    REQUIRE(p.run_until([&] { return static_cast<bool>(later); }));
    CHECK(none.empty());
}

TEST_CASE("WebSocket frames written corked arrive as separate messages, then the close", "[beast][cork]") {
    Pair p;
    bb::websocket::stream<CorkStream> server{std::move(*p.cork)};
    bb::websocket::stream<tcp::socket> client{std::move(p.peer)};
    bool accepted = false, handshaken = false;
    server.async_accept(net::bind_executor(p.ioc, [&](bb::error_code ec) { accepted = !ec; }));
    client.async_handshake("127.0.0.1", "/", net::bind_executor(p.ioc, [&](bb::error_code ec) { handshaken = !ec; }));
    REQUIRE(p.run_until([&] { return accepted && handshaken; }));

    const std::vector<std::string> frames{"one", "two", "three"};
    std::size_t written = 0;
    server.next_layer().cork();
    std::function<void()> write_next = [&] {
        server.async_write(net::buffer(frames[written]), net::bind_executor(p.ioc, [&](bb::error_code ec, std::size_t) {
                               REQUIRE_FALSE(ec);
                               if (++written < frames.size()) write_next();
                           }));
    };
    write_next();
    REQUIRE(p.run_until([&] { return written == frames.size(); }));
    CHECK(client.next_layer().available() == 0);  // all three wait in the cork
    bool uncorked = false;
    server.next_layer().uncork([&](bb::error_code ec) { uncorked = !ec; });

    std::vector<std::string> got;
    bb::flat_buffer buf;
    std::function<void()> read_next = [&] {
        client.async_read(buf, net::bind_executor(p.ioc, [&](bb::error_code ec, std::size_t) {
                              if (ec) return;
                              got.push_back(bb::buffers_to_string(buf.data()));
                              buf.consume(buf.size());
                              read_next();
                          }));
    };
    read_next();
    REQUIRE(p.run_until([&] { return uncorked && got.size() == 3; }));
    CHECK(got == frames);

    // The close handshake's teardown goes through CorkStream's async_teardown.
    bool closed = false;
    server.async_close(bb::websocket::close_code::going_away,
                       net::bind_executor(p.ioc, [&](bb::error_code ec) { closed = !ec; }));
    REQUIRE(p.run_until([&] { return closed; }));
    CHECK(client.reason().code == bb::websocket::close_code::going_away);
}

// ---- Prepared frames (src/beast/frame.hpp) and their write path --------------------------------

namespace {

using wsgate::beast::detail::Frame;
using wsgate::beast::detail::prepare_text_frame;

// Counts what the connection hears through CorkStream::Listener.
struct Heard final : CorkStream::Listener {
    int written = 0;
    std::vector<bb::error_code> errors;
    void frames_written(bb::error_code ec) override {
        if (ec) errors.push_back(ec);
        else ++written;
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

// The header RFC 6455 §5.2 prescribes for an unmasked FIN text frame of `n` bytes (minimal form).
std::string expected_header(std::uint64_t n) {
    std::string h{"\x81"};
    if (n <= 125) {
        h += static_cast<char>(n);
    } else if (n <= 65535) {
        h += static_cast<char>(126);
        h += static_cast<char>((n >> 8) & 0xFF);
        h += static_cast<char>(n & 0xFF);
    } else {
        h += static_cast<char>(127);
        for (int shift = 56; shift >= 0; shift -= 8) h += static_cast<char>((n >> shift) & 0xFF);
    }
    return h;
}

// A server WebSocket stream on CorkStream and a Beast client, handshaken over loopback.
struct WsPair {
    Pair p;
    std::optional<bb::websocket::stream<CorkStream>> server;
    std::optional<bb::websocket::stream<tcp::socket>> client;
    std::shared_ptr<int> owner = std::make_shared<int>(0);
    Heard heard;

    WsPair() {
        server.emplace(std::move(*p.cork));
        client.emplace(std::move(p.peer));
        server->next_layer().set_owner(owner, &heard);
        bool accepted = false, handshaken = false;
        server->async_accept(net::bind_executor(p.ioc, [&](bb::error_code ec) { accepted = !ec; }));
        client->async_handshake("127.0.0.1", "/",
                                net::bind_executor(p.ioc, [&](bb::error_code ec) { handshaken = !ec; }));
        REQUIRE(p.run_until([&] { return accepted && handshaken; }));
    }

    CorkStream& out() { return server->next_layer(); }

    // Queues prepared frames as a connection's batch: cork, add, uncork.
    void send_frames(const std::vector<Frame>& frames) {
        out().cork();
        for (const auto& f : frames) out().add_frame(f);
        out().uncork();
    }

    // Reads client messages until `count` arrived or the client's read fails (recorded).
    std::vector<std::string> got;
    bb::error_code read_error;
    bb::flat_buffer buf;
    void start_reading() {
        client->async_read(buf, net::bind_executor(p.ioc, [this](bb::error_code ec, std::size_t) {
                               if (ec) {
                                   read_error = ec;
                                   return;
                               }
                               got.push_back(bb::buffers_to_string(buf.data()));
                               buf.consume(buf.size());
                               start_reading();
                           }));
    }
};

}  // namespace

TEST_CASE("text frame headers use the minimal length encoding of RFC 6455 5.2", "[beast][frame]") {
    for (std::uint64_t n : {0ull, 1ull, 125ull, 126ull, 127ull, 65535ull, 65536ull, 70000ull, 1ull << 32}) {
        unsigned char h[wsgate::beast::detail::max_frame_header];
        const std::size_t size = wsgate::beast::detail::text_frame_header(n, h);
        INFO("length " << n);
        CHECK(std::string(reinterpret_cast<const char*>(h), size) == expected_header(n));
    }
    const auto f = prepare_text_frame("hello");
    CHECK(f->bytes == std::string{"\x81\x05hello"});
    CHECK(f->payload() == "hello");
}

TEST_CASE("prepared frames of every length class reach the peer byte for byte and as messages",
          "[beast][frame]") {
    const std::vector<std::size_t> lengths{0, 1, 125, 126, 127, 65535, 65536, 70000, 1 << 20};
    SECTION("the bytes on the wire") {
        Pair p;
        Heard heard;
        auto owner = std::make_shared<int>(0);
        p.cork->set_owner(owner, &heard);
        std::string expected;
        p.cork->cork();
        for (auto n : lengths) {
            const auto body = pattern(n);
            p.cork->add_frame(prepare_text_frame(body));
            expected += expected_header(n) + body;
        }
        p.cork->uncork();
        std::string got;
        std::thread reader([&] { got = p.read_exactly(expected.size()); });
        REQUIRE(p.run_until([&] { return heard.written == 1; }));
        reader.join();
        CHECK(heard.errors.empty());
        CHECK(got == expected);
    }
    SECTION("as WebSocket messages a Beast client accepts") {
        WsPair w;
        std::vector<Frame> frames;
        std::vector<std::string> bodies;
        for (auto n : lengths) {
            bodies.push_back(pattern(n));
            frames.push_back(prepare_text_frame(bodies.back()));
        }
        w.start_reading();
        w.send_frames(frames);
        REQUIRE(w.p.run_until([&] { return w.got.size() == bodies.size() || w.read_error; }));
        CHECK_FALSE(w.read_error);
        CHECK(w.got == bodies);
        CHECK(w.client->got_text());
        CHECK(w.heard.written == 1);
    }
}

TEST_CASE("a frame shared by many connections is written whole to each", "[beast][frame]") {
    WsPair a, b;
    const auto body = pattern(300);
    const Frame shared = prepare_text_frame(body);
    a.start_reading();
    b.start_reading();
    a.send_frames({shared, shared});
    b.send_frames({shared});
    REQUIRE(a.p.run_until([&] { return a.got.size() == 2 || a.read_error; }));
    REQUIRE(b.p.run_until([&] { return b.got.size() == 1 || b.read_error; }));
    CHECK(a.got == std::vector<std::string>{body, body});
    CHECK(b.got == std::vector<std::string>{body});
    CHECK(shared.use_count() == 1);  // released by both once written
}

TEST_CASE("a pong answering a ping lands between whole frames, never inside one", "[beast][frame]") {
    WsPair w;
    // The server reads (it answers pings while reading), the client pings while a large frame
    // is still on the wire.
    bb::flat_buffer sbuf;
    bool server_read_done = false;
    w.server->async_read(sbuf, net::bind_executor(w.p.ioc, [&](bb::error_code, std::size_t) { server_read_done = true; }));
    const auto big = pattern(8 << 20);
    w.send_frames({prepare_text_frame(big)});
    int pongs = 0;
    w.client->control_callback([&](bb::websocket::frame_type kind, bb::string_view) {
        if (kind == bb::websocket::frame_type::pong) ++pongs;
    });
    bool pinged = false;
    w.client->async_ping("p", net::bind_executor(w.p.ioc, [&](bb::error_code ec) { pinged = !ec; }));
    w.p.settle();
    w.send_frames({prepare_text_frame("after")});
    w.start_reading();
    REQUIRE(w.p.run_until([&] { return (w.got.size() == 2 && pongs == 1) || w.read_error; }));
    CHECK(pinged);
    CHECK_FALSE(w.read_error);
    REQUIRE(w.got.size() == 2);
    CHECK(w.got[0] == big);
    CHECK(w.got[1] == "after");
    CHECK(pongs == 1);
    CHECK_FALSE(server_read_done);
}

TEST_CASE("fragmented messages from the peer are read whole while prepared frames go out", "[beast][frame]") {
    WsPair w;
    w.client->auto_fragment(true);
    w.client->write_buffer_bytes(256);  // a 10,000-byte message leaves in 40 fragments
    const auto in = pattern(10'000);
    bool sent = false;
    w.client->async_write(net::buffer(in), net::bind_executor(w.p.ioc, [&](bb::error_code ec, std::size_t) { sent = !ec; }));
    bb::flat_buffer sbuf;
    std::string received;
    w.server->async_read(sbuf, net::bind_executor(w.p.ioc, [&](bb::error_code ec, std::size_t) {
                             if (!ec) received = bb::buffers_to_string(sbuf.data());
                         }));
    std::vector<Frame> frames;
    for (int i = 0; i < 50; ++i) frames.push_back(prepare_text_frame("out-" + std::to_string(i)));
    w.start_reading();
    w.send_frames(frames);
    REQUIRE(w.p.run_until([&] { return (sent && received.size() == in.size() && w.got.size() == 50) || w.read_error; }));
    CHECK(received == in);
    CHECK_FALSE(w.server->got_binary());
    REQUIRE(w.got.size() == 50);
    CHECK(w.got.front() == "out-0");
    CHECK(w.got.back() == "out-49");
}

TEST_CASE("no data frame follows a close frame", "[beast][frame]") {
    WsPair w;
    w.start_reading();
    w.send_frames({prepare_text_frame("before")});
    bool closed = false;
    w.server->async_close(bb::websocket::close_code::normal,
                          net::bind_executor(w.p.ioc, [&](bb::error_code) { closed = true; }));
    CHECK(w.out().close_queued());
    // A batch queued after the close frame is refused, and the connection hears so.
    w.send_frames({prepare_text_frame("too late")});
    REQUIRE(w.heard.errors.size() == 1);
    CHECK(w.heard.errors[0] == net::error::operation_aborted);
    REQUIRE(w.p.run_until([&] { return static_cast<bool>(w.read_error); }));
    CHECK(w.read_error == bb::websocket::error::closed);
    CHECK(w.got == std::vector<std::string>{"before"});
    CHECK(w.client->reason().code == bb::websocket::close_code::normal);
}

TEST_CASE("a peer that went away fails the connection's batch", "[beast][frame]") {
    Pair p;
    Heard heard;
    auto owner = std::make_shared<int>(0);
    p.cork->set_owner(owner, &heard);
    p.peer.set_option(net::socket_base::linger(true, 0));
    p.peer.close();
    const auto big = prepare_text_frame(pattern(8 << 20));
    for (int i = 0; i < 20 && heard.errors.empty(); ++i) {
        const int before = heard.written;
        p.cork->cork();
        p.cork->add_frame(big);
        p.cork->uncork();
        REQUIRE(p.run_until([&] { return heard.written > before || !heard.errors.empty(); }));
    }
    REQUIRE(heard.errors.size() == 1);
    // Later batches fail at once.
    p.cork->cork();
    p.cork->add_frame(big);
    p.cork->uncork();
    CHECK(heard.errors.size() == 2);
}
