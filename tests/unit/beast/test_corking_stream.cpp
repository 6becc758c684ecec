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
