// permessage-deflate (RFC 7692) on the wsgate::beast server, over loopback sockets: settings
// validation, negotiation (raw upgrade requests, the exact Sec-WebSocket-Extensions answer),
// compressed frames on the wire (RSV1, byte counts, inflated content), round trips with an
// independent client (python3-websockets), clients that do not offer the extension, and a
// decompression bomb refused with 1009 while another connection goes on.
#include "catch.hpp"

#include <wsgate/beast/app.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/zlib/inflate_stream.hpp>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
using wsgate::beast::App;
using wsgate::beast::AppSettings;
namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

constexpr std::size_t kMaxMessage = 64 * 1024;

AppSettings settings(bool deflate) {
    AppSettings s;
    s.server.port = 0;
    s.handle_signals = false;
    s.server.shutdown_timeout = 2s;
    s.server.max_message_bytes = kMaxMessage;
    s.server.deflate.enabled = deflate;
    s.gateway.max_message_bytes = kMaxMessage;
    s.gateway.rate_per_second = 0;
    return s;
}

// An App with an `echo` route that sends the message's `data` back.
struct EchoApp {
    explicit EchoApp(AppSettings s) : app(std::move(s), std::make_shared<wsgate::AnonymousAuthorizer>()) {
        app.on(
            "echo", [](wsgate::MessageContext& m) { m.reply(wsgate::Envelope{"echo"}.data(m.message().at("data"))); },
            wsgate::RouteAccess::include_anonymous);
        done = std::async(std::launch::async, [this] { app.run(); });
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (app.port() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
        REQUIRE(app.port() != 0);
    }
    ~EchoApp() {
        app.stop();
        if (done.valid()) done.wait();
    }
    EchoApp(const EchoApp&) = delete;
    EchoApp& operator=(const EchoApp&) = delete;
    std::string url() const { return "ws://127.0.0.1:" + std::to_string(app.port()) + "/ws"; }

    App app;
    std::future<void> done;
};

// A seed 002 style METRICS_UPDATE batch: `n` change records.
nlohmann::json metrics_updates(int n) {
    auto updates = nlohmann::json::array();
    for (int i = 0; i < n; ++i) {
        updates.push_back({{"eventType", "MODIFY"},
                           {"timestamp", 1699123456789 + i},
                           {"data",
                            {{"entity_id", "stream-" + std::to_string(i)},
                             {"entity_type", "stream"},
                             {"metric_value", 1000 + i * 7},
                             {"timestamp", "2024-11-04T12:34:56Z"}}}});
    }
    return updates;
}

// A WebSocket peer speaking raw bytes: it sends its own upgrade request (with the extension offer
// it is given) and reads server frames as they are on the wire.
class RawPeer {
public:
    RawPeer(unsigned short port, const std::string& offer) {
        sock_.connect({net::ip::make_address("127.0.0.1"), port});
        http::request<http::empty_body> req{http::verb::get, "/ws", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::upgrade, "websocket");
        req.set(http::field::connection, "Upgrade");
        req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
        req.set(http::field::sec_websocket_version, "13");
        if (!offer.empty()) req.set(http::field::sec_websocket_extensions, offer);
        http::write(sock_, req);
        bool done = false;
        boost::system::error_code ec;
        http::async_read(sock_, buf_, res_, [&](boost::system::error_code e, std::size_t) {
            ec = e;
            done = true;
        });
        run_until(done);
        if (ec) throw std::runtime_error("upgrade answer: " + ec.message());
    }

    [[nodiscard]] int status() const { return res_.result_int(); }
    /// The Sec-WebSocket-Extensions answer, empty if there is none.
    [[nodiscard]] std::string extensions() const {
        auto it = res_.find(http::field::sec_websocket_extensions);
        return it == res_.end() ? std::string{} : std::string{it->value()};
    }

    struct Message {
        bool compressed = false;     // RSV1 on the first frame
        std::size_t wire_bytes = 0;  // frame headers and payloads
        std::string payload;         // as sent (compressed or not)
    };

    /// The next data message (its frames up to FIN), control frames skipped.
    Message read_message() {
        Message m;
        bool first = true;
        for (;;) {
            need(2);
            const auto b0 = byte(0);
            const auto b1 = byte(1);
            std::size_t header = 2;
            std::uint64_t len = b1 & 0x7F;
            if (len == 126) {
                need(4);
                len = (std::uint64_t{byte(2)} << 8) | byte(3);
                header = 4;
            } else if (len == 127) {
                need(10);
                len = 0;
                for (int i = 0; i < 8; ++i) len = (len << 8) | byte(2 + static_cast<std::size_t>(i));
                header = 10;
            }
            need(header + len);
            const auto opcode = b0 & 0x0F;
            std::string body(static_cast<const char*>(buf_.data().data()) + header, len);
            buf_.consume(header + len);
            if (opcode >= 0x8) continue;  // ping/pong/close
            if (first) m.compressed = (b0 & 0x40) != 0;
            first = false;
            m.wire_bytes += header + len;
            m.payload += body;
            if ((b0 & 0x80) != 0) return m;
        }
    }

private:
    unsigned byte(std::size_t i) const { return static_cast<const unsigned char*>(buf_.data().data())[i]; }

    void need(std::size_t n) {
        while (buf_.size() < n) {
            bool done = false;
            boost::system::error_code ec;
            std::size_t got = 0;
            sock_.async_read_some(buf_.prepare(64 * 1024), [&](boost::system::error_code e, std::size_t k) {
                ec = e;
                got = k;
                done = true;
            });
            run_until(done);
            buf_.commit(got);
            if (ec) throw std::runtime_error("read: " + ec.message());
        }
    }

    void run_until(bool& done) {
        ioc_.restart();
        ioc_.run_for(5s);
        if (!done) {
            boost::system::error_code ignored;
            sock_.cancel(ignored);
            ioc_.restart();
            ioc_.run();
            throw std::runtime_error("no answer from the server within 5 s");
        }
    }

    net::io_context ioc_;
    tcp::socket sock_{ioc_};
    boost::beast::flat_buffer buf_;
    http::response<http::string_body> res_;
};

// Inflates a permessage-deflate message payload (RFC 7692 §7.2.2: append 00 00 ff ff).
std::string inflate(std::string payload) {
    payload.append("\x00\x00\xff\xff", 4);
    boost::beast::zlib::inflate_stream zi;
    zi.reset(15);
    std::string out(16 * 1024 * 1024, '\0');
    boost::beast::zlib::z_params zs;
    zs.next_in = payload.data();
    zs.avail_in = payload.size();
    zs.next_out = out.data();
    zs.avail_out = out.size();
    boost::beast::error_code ec;
    zi.write(zs, boost::beast::zlib::Flush::sync, ec);
    if (ec) throw std::runtime_error("inflate: " + ec.message());
    out.resize(zs.total_out);
    return out;
}

// Publishes a METRICS_UPDATE to every connection (each was stored before its upgrade was answered).
void publish_to_all(App& app, const nlohmann::json& updates, std::size_t connections) {
    auto report = app.publish(wsgate::Envelope{"metrics_update"}.field("updates", updates), wsgate::Audience::everyone());
    REQUIRE(report.delivered == connections);
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs tests/unit/beast/deflate_peer.py and parses the JSON line it prints.
nlohmann::json run_peer(const std::string& args) {
    const auto out = std::filesystem::temp_directory_path() /
                     ("wsgate-deflate-peer-" + std::to_string(::getpid()) + "-" +
                      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".log");
    const std::string script = std::string(WSGATE_SOURCE_DIR) + "/tests/unit/beast/deflate_peer.py";
    const std::string cmd =
        "timeout 60 '" + std::string(WSGATE_TEST_PYTHON) + "' '" + script + "' " + args + " > '" + out.string() + "' 2>&1";
    const int rc = std::system(cmd.c_str());
    const std::string text = read_file(out);
    std::filesystem::remove(out);
    INFO("deflate_peer.py " << args << ":\n" << text);
    REQUIRE(rc != -1);
    REQUIRE(WIFEXITED(rc));
    REQUIRE(WEXITSTATUS(rc) == 0);
    // The result is the last line (the script prints nothing else on success).
    std::istringstream lines(text);
    std::string line;
    std::string last;
    while (std::getline(lines, line))
        if (!line.empty()) last = line;
    return nlohmann::json::parse(last);
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

template <class F>
std::string invalid_argument_of(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

}  // namespace

TEST_CASE("deflate settings out of range are refused with the field's name", "[beast][deflate]") {
    using wsgate::beast::Server;
    using wsgate::beast::ServerSettings;
    auto with = [](auto change) {
        ServerSettings s;
        s.deflate.enabled = true;
        change(s.deflate);
        return invalid_argument_of([&] { Server server{s}; });
    };
    CHECK(contains(with([](auto& d) { d.server_max_window_bits = 8; }), "deflate.server_max_window_bits must be 9..15"));
    CHECK(contains(with([](auto& d) { d.server_max_window_bits = 16; }), "server_max_window_bits"));
    CHECK(contains(with([](auto& d) { d.client_max_window_bits = 8; }), "deflate.client_max_window_bits must be 9..15, not 8"));
    CHECK(contains(with([](auto& d) { d.client_max_window_bits = 16; }), "client_max_window_bits"));
    CHECK(contains(with([](auto& d) { d.level = 10; }), "deflate.level must be 0..9"));
    CHECK(contains(with([](auto& d) { d.level = -1; }), "deflate.level"));
    CHECK(contains(with([](auto& d) { d.memory_level = 0; }), "deflate.memory_level must be 1..9"));
    CHECK(contains(with([](auto& d) { d.memory_level = 10; }), "deflate.memory_level"));
    // The limits themselves are accepted, and so are the defaults.
    CHECK(with([](auto& d) { d = {true, 9, 9, true, true, 0, 1, 0}; }) == "(nothing thrown)");
    CHECK(with([](auto& d) { d = {true, 15, 15, false, false, 9, 9, 1}; }) == "(nothing thrown)");
    CHECK(invalid_argument_of([] { Server server{ServerSettings{}}; }) == "(nothing thrown)");
    // App builds its Server from AppSettings::server: the same error reaches the host.
    auto s = settings(true);
    s.server.deflate.level = 12;
    CHECK(contains(invalid_argument_of([&] { App a(s, std::make_shared<wsgate::AnonymousAuthorizer>()); }),
                   "deflate.level"));
}

TEST_CASE("deflate is off by default: an offer gets no extension and frames leave uncompressed",
          "[beast][deflate]") {
    CHECK_FALSE(wsgate::beast::ServerSettings{}.deflate.enabled);
    EchoApp e{settings(false)};
    RawPeer peer{e.app.port(), "permessage-deflate; client_max_window_bits"};
    REQUIRE(peer.status() == 101);
    CHECK(peer.extensions().empty());
    const auto updates = metrics_updates(100);
    publish_to_all(e.app, updates, 1);
    const auto m = peer.read_message();
    CHECK_FALSE(m.compressed);
    CHECK(m.wire_bytes > updates.dump().size());
    CHECK(nlohmann::json::parse(m.payload)["updates"] == updates);
    CHECK(e.app.server().metrics().deflate_accepted.load() == 0);

    // An independent client offering the extension (python3-websockets does by default).
    auto r = run_peer("echo '" + e.url() + "' 16384");
    CHECK(r["extensions"].is_null());
    CHECK(r["echo_equal"] == true);
    CHECK(r["received_wire_bytes"].get<std::size_t>() > r["received_message_bytes"].get<std::size_t>());
}

TEST_CASE("with deflate on, the extension is negotiated and a large message leaves compressed",
          "[beast][deflate]") {
    EchoApp e{settings(true)};
    RawPeer peer{e.app.port(), "permessage-deflate; client_max_window_bits"};
    REQUIRE(peer.status() == 101);
    CHECK(peer.extensions() == "permessage-deflate");
    const auto updates = metrics_updates(100);  // about 15 KB of JSON
    publish_to_all(e.app, updates, 1);
    const auto m = peer.read_message();
    CHECK(m.compressed);
    const auto json_bytes = nlohmann::json{{"updates", updates}}.dump().size();
    CAPTURE(json_bytes, m.wire_bytes);
    CHECK(m.wire_bytes * 4 < json_bytes);
    CHECK(nlohmann::json::parse(inflate(m.payload))["updates"] == updates);

    // Below `min_message_bytes` (256) a message leaves as it is, on the same connection.
    e.app.publish(wsgate::Envelope{"tick"}, wsgate::Audience::everyone());
    const auto small = peer.read_message();
    CHECK_FALSE(small.compressed);
    CHECK(nlohmann::json::parse(small.payload)["type"] == "tick");
    CHECK(e.app.server().metrics().deflate_accepted.load() == 1);
    CHECK(contains(e.app.server().prometheus_text(), "wsgate_deflate_connections_total 1\n"));
}

TEST_CASE("the server's deflate settings shape the negotiated parameters", "[beast][deflate]") {
    SECTION("no context takeover and a smaller server window are answered as configured") {
        auto s = settings(true);
        s.server.deflate.server_no_context_takeover = true;
        s.server.deflate.client_no_context_takeover = true;
        s.server.deflate.server_max_window_bits = 12;
        EchoApp e{s};
        RawPeer peer{e.app.port(), "permessage-deflate; client_max_window_bits"};
        REQUIRE(peer.status() == 101);
        CHECK(peer.extensions() ==
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12");
        // Python's client accepts these parameters, and messages still round-trip both ways.
        auto r = run_peer("echo '" + e.url() + "' 16384");
        CHECK(r["echo_equal"] == true);
        CHECK(r["received_wire_bytes"].get<std::size_t>() * 4 < r["received_message_bytes"].get<std::size_t>());
    }
    SECTION("a limited client window is declined for a client that cannot limit its window") {
        auto s = settings(true);
        s.server.deflate.client_max_window_bits = 10;
        EchoApp e{s};
        RawPeer limited{e.app.port(), "permessage-deflate; client_max_window_bits"};
        CHECK(limited.extensions() == "permessage-deflate; client_max_window_bits=10");
        RawPeer unlimited{e.app.port(), "permessage-deflate"};
        REQUIRE(unlimited.status() == 101);
        CHECK(unlimited.extensions().empty());
    }
    SECTION("a client asking for a smaller server window gets it") {
        EchoApp e{settings(true)};
        RawPeer peer{e.app.port(), "permessage-deflate; server_max_window_bits=10"};
        CHECK(peer.extensions() == "permessage-deflate; server_max_window_bits=10");
    }
}

TEST_CASE("with deflate on, messages round-trip both ways with python websockets, in fewer bytes",
          "[beast][deflate][python]") {
    EchoApp e{settings(true)};
    auto r = run_peer("echo '" + e.url() + "' 32768");
    CHECK(contains(r["extensions"].get<std::string>(), "permessage-deflate"));
    CHECK(r["echo_equal"] == true);
    const auto sent = r["sent_message_bytes"].get<std::size_t>();
    const auto received = r["received_message_bytes"].get<std::size_t>();
    CHECK(sent > 32768);
    // Client to server: the server inflated what Python compressed (the echo is equal), and the
    // bytes on the socket were a fraction of the message. Server to client likewise.
    CHECK(r["sent_wire_bytes"].get<std::size_t>() * 4 < sent);
    CHECK(r["received_wire_bytes"].get<std::size_t>() * 4 < received);
    CHECK(e.app.server().metrics().deflate_accepted.load() == 1);
}

TEST_CASE("with deflate on, a client that does not offer the extension still works", "[beast][deflate][python]") {
    EchoApp e{settings(true)};
    auto r = run_peer("echo '" + e.url() + "' 16384 --no-compression");
    CHECK(r["extensions"].is_null());
    CHECK(r["echo_equal"] == true);
    CHECK(r["received_wire_bytes"].get<std::size_t>() > r["received_message_bytes"].get<std::size_t>());
    CHECK(r["sent_wire_bytes"].get<std::size_t>() > r["sent_message_bytes"].get<std::size_t>());

    RawPeer peer{e.app.port(), ""};
    REQUIRE(peer.status() == 101);
    CHECK(peer.extensions().empty());
    const auto updates = metrics_updates(100);
    publish_to_all(e.app, updates, 1);
    const auto m = peer.read_message();
    CHECK_FALSE(m.compressed);
    CHECK(nlohmann::json::parse(m.payload)["updates"] == updates);
    CHECK(e.app.server().metrics().deflate_accepted.load() == 0);
}

TEST_CASE("a compressed message inflating past max_message_bytes is closed with 1009; others go on",
          "[beast][deflate][python]") {
    EchoApp e{settings(true)};
    // 4 MiB inflated, a few KiB compressed: the compressed frame passes the 64 KiB limit, the
    // inflated size does not.
    auto r = run_peer("bomb '" + e.url() + "' " + std::to_string(4 * 1024 * 1024));
    CHECK(contains(r["attacker_extensions"].get<std::string>(), "permessage-deflate"));
    CHECK(r["attacker_sent_wire_bytes"].get<std::size_t>() < kMaxMessage);
    CHECK(r["attacker_close_code"] == 1009);
    CHECK(r["bystander_before"] == "pong");
    CHECK(r["bystander_after"] == "pong");
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (e.app.server().connection_count() > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    CHECK(e.app.server().connection_count() == 0);
    // The server still accepts and compresses for new connections.
    auto again = run_peer("echo '" + e.url() + "' 4096");
    CHECK(again["echo_equal"] == true);
}
