// Idle-connection benchmark: opens N WebSocket connections that stay idle, from several loopback
// source addresses (one address has only ~28k ephemeral ports), each authenticated with its own
// HS256 user session token and subscribed to one topic. Reports the connect rate and the server's
// resident memory per connection (VmRSS of --server-pid before and after connecting) and CPU time
// per connect, then makes
// one publish and counts the connections it reached. connections.sh drives it.
//
//   bench_idle_connections --port P --server-pid PID -n 50000 [--sources 4] [--parallel 256]
//       [--path /ws] [--secret S --subscribe TOPIC]            authenticated wsgate connections
//       [--publish-http /publish --admin-key K --publish-body JSON]  publish: POST to the server
//       [--publish-ws /pub --publish-text TEXT]                publish: one WebSocket message
//       [--marker TEXT] [--label NAME] [--settle-ms 2000]
//
// Source addresses are 127.0.0.2, 127.0.0.3, ... (bound before connect). The generator raises its
// own descriptor soft limit to the hard limit.
#include <wsgate/auth/jwt.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace bb = boost::beast;
namespace http = bb::http;
namespace websocket = bb::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    unsigned short port = 0;
    long server_pid = 0;
    std::size_t n = 1000;
    std::size_t sources = 4;
    std::size_t parallel = 256;
    std::string path = "/ws";
    std::string secret;
    std::string subscribe;
    std::string publish_http;
    std::string admin_key;
    std::string publish_body;
    std::string publish_ws;
    std::string publish_text;
    std::string marker = "idle-bench";
    std::string label = "server";
    long settle_ms = 2000;
};

long proc_rss_kib(long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

// utime + stime of `pid`, in seconds.
double proc_cpu_seconds(long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto rp = s.rfind(')');
    if (rp == std::string::npos) return 0;
    std::istringstream in(s.substr(rp + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Totals {
    std::size_t ready = 0;      // connected (and subscribed, when asked)
    std::size_t failed = 0;
    std::size_t delivered = 0;  // connections that received the marker
    std::size_t in_flight = 0;
    std::string first_error;
};

// One idle client: connect from its source address, handshake (token in the query), subscribe,
// then read until the process ends.
class Conn : public std::enable_shared_from_this<Conn> {
public:
    Conn(net::io_context& ioc, const Args& a, Totals& t, net::ip::address source, std::string target)
        : ws_(ioc), a_(a), t_(t), source_(source), target_(std::move(target)) {}

    void start(const tcp::endpoint& server) {
        auto& sock = ws_.next_layer();
        bb::error_code ec;
        sock.open(tcp::v4(), ec);
        // The port is chosen at connect time, for the whole 4-tuple: a bind to port 0 would
        // search for a port free on the address, slowly once earlier runs left many in TIME_WAIT.
        const int one = 1;
        if (!ec) ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (!ec) sock.bind(tcp::endpoint(source_, 0), ec);
        if (ec) return fail("bind", ec);
        sock.async_connect(server, [self = shared_from_this()](bb::error_code ec2) {
            if (ec2) return self->fail("connect", ec2);
            self->ws_.set_option(websocket::stream_base::timeout::suggested(bb::role_type::client));
            self->ws_.async_handshake("127.0.0.1", self->target_, [self](bb::error_code ec3) {
                if (ec3) return self->fail("handshake", ec3);
                if (self->a_.subscribe.empty()) self->mark_ready();
                else self->send_subscribe();
                self->read();
            });
        });
    }

private:
    void send_subscribe() {
        sub_ = R"({"type":"subscribe","topic":")" + a_.subscribe + "\"}";
        ws_.text(true);
        ws_.async_write(net::buffer(sub_), [self = shared_from_this()](bb::error_code ec, std::size_t) {
            if (ec) self->fail("subscribe", ec);
            std::string{}.swap(self->sub_);
        });
    }

    void read() {
        ws_.async_read(buf_, [self = shared_from_this()](bb::error_code ec, std::size_t) {
            if (ec) {
                if (!self->done_) self->fail("read", ec);
                return;
            }
            std::string_view text{static_cast<const char*>(self->buf_.data().data()), self->buf_.size()};
            if (!self->ready_ && text.find("\"ack\"") != std::string_view::npos) self->mark_ready();
            else if (!self->got_marker_ && text.find(self->a_.marker) != std::string_view::npos) {
                self->got_marker_ = true;
                ++self->t_.delivered;
            } else if (!self->ready_ && text.find("\"error\"") != std::string_view::npos) {
                self->done_ = true;
                return self->fail("subscribe", bb::error_code{}, std::string{text});
            }
            self->buf_.consume(self->buf_.size());
            self->read();
        });
    }

    void mark_ready() {
        if (ready_) return;
        ready_ = true;
        ++t_.ready;
        --t_.in_flight;
    }

    void fail(const char* what, bb::error_code ec, std::string detail = {}) {
        if (t_.first_error.empty())
            t_.first_error = std::string{what} + ": " + (detail.empty() ? ec.message() : detail);
        if (!ready_) {
            ready_ = true;  // counted once, as failed
            ++t_.failed;
            --t_.in_flight;
        }
        done_ = true;
    }

    websocket::stream<tcp::socket> ws_;
    bb::flat_buffer buf_;
    const Args& a_;
    Totals& t_;
    net::ip::address source_;
    std::string target_;
    std::string sub_;
    bool ready_ = false;
    bool got_marker_ = false;
    bool done_ = false;
};

std::string session_token(const wsgate::jwt::SigningKey& key, std::size_t i) {
    const auto now = static_cast<long long>(std::time(nullptr));
    nlohmann::json claims{{"sub", "user-" + std::to_string(i)},
                          {"sid", "session-" + std::to_string(i)},
                          {"deviceId", "device-" + std::to_string(i)},
                          {"permissions", {"read_leaderboard", "read_events", "publish"}},
                          {"iat", now},
                          {"exp", now + 3600}};
    return wsgate::jwt::sign(claims, key);
}

// POST `body` to `path` with the admin key; returns the HTTP status (0 on failure).
int http_publish(net::io_context& ioc, const tcp::endpoint& server, const Args& a, std::string& reply) {
    bb::tcp_stream s(ioc);
    bb::error_code ec;
    s.connect(server, ec);
    if (ec) return 0;
    http::request<http::string_body> req{http::verb::post, a.publish_http, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.set("X-Admin-Key", a.admin_key);
    req.body() = a.publish_body;
    req.prepare_payload();
    http::write(s, req, ec);
    if (ec) return 0;
    bb::flat_buffer b;
    http::response<http::string_body> res;
    http::read(s, b, res, ec);
    if (ec) return 0;
    reply = res.body();
    return static_cast<int>(res.result_int());
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--port") a.port = static_cast<unsigned short>(std::stoul(v));
        else if (k == "--server-pid") a.server_pid = std::stol(v);
        else if (k == "-n") a.n = std::stoul(v);
        else if (k == "--sources") a.sources = std::max<std::size_t>(1, std::stoul(v));
        else if (k == "--parallel") a.parallel = std::max<std::size_t>(1, std::stoul(v));
        else if (k == "--path") a.path = v;
        else if (k == "--secret") a.secret = v;
        else if (k == "--subscribe") a.subscribe = v;
        else if (k == "--publish-http") a.publish_http = v;
        else if (k == "--admin-key") a.admin_key = v;
        else if (k == "--publish-body") a.publish_body = v;
        else if (k == "--publish-ws") a.publish_ws = v;
        else if (k == "--publish-text") a.publish_text = v;
        else if (k == "--marker") a.marker = v;
        else if (k == "--label") a.label = v;
        else if (k == "--settle-ms") a.settle_ms = std::stol(v);
        else {
            std::cerr << "unknown option " << k << "\n";
            return 2;
        }
    }
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (a.n + 64 > rl.rlim_cur) {
        std::cerr << "bench_idle_connections: -n " << a.n << " needs more descriptors than the limit " << rl.rlim_cur
                  << " (raise the hard limit: ulimit -Hn)\n";
        return 2;
    }

    net::io_context ioc(1);
    const tcp::endpoint server(net::ip::make_address("127.0.0.1"), a.port);
    std::vector<net::ip::address> sources;
    for (std::size_t i = 0; i < a.sources; ++i)
        sources.push_back(net::ip::make_address_v4(0x7F000002u + static_cast<std::uint32_t>(i)));

    std::optional<wsgate::jwt::SigningKey> key;
    if (!a.secret.empty()) key = wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, a.secret);
    std::vector<std::string> targets(a.n);
    for (std::size_t i = 0; i < a.n; ++i)
        targets[i] = key ? a.path + "?token=" + session_token(*key, i) : a.path;

    const long rss0 = a.server_pid ? proc_rss_kib(a.server_pid) : 0;
    const double cpu0 = a.server_pid ? proc_cpu_seconds(a.server_pid) : 0;
    Totals t;
    std::vector<std::shared_ptr<Conn>> conns;
    conns.reserve(a.n);
    const auto t0 = Clock::now();
    std::size_t started = 0;
    // Keeps `parallel` connects in flight; polls the io_context between batches.
    while (t.ready + t.failed < a.n) {
        while (started < a.n && t.in_flight < a.parallel) {
            auto c = std::make_shared<Conn>(ioc, a, t, sources[started % sources.size()], std::move(targets[started]));
            ++t.in_flight;
            ++started;
            c->start(server);
            conns.push_back(std::move(c));
        }
        ioc.run_one_for(std::chrono::seconds(1));
        if (Clock::now() - t0 > std::chrono::minutes(10)) break;
    }
    const double connect_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double connect_cpu = a.server_pid ? proc_cpu_seconds(a.server_pid) - cpu0 : 0;
    std::vector<std::string>{}.swap(targets);
    if (t.failed) std::cerr << a.label << ": " << t.failed << " connections failed; first: " << t.first_error << "\n";

    // Let the server finish what the connects left (logs, allocator caches) before measuring.
    ioc.run_for(std::chrono::milliseconds(a.settle_ms));
    const long rss1 = a.server_pid ? proc_rss_kib(a.server_pid) : 0;

    // One publish; every connection should receive it once.
    const auto p0 = Clock::now();
    std::shared_ptr<websocket::stream<tcp::socket>> pub;
    if (!a.publish_http.empty()) {
        std::string reply;
        const int status = http_publish(ioc, server, a, reply);
        if (status != 200) std::cerr << a.label << ": publish answered " << status << ": " << reply << "\n";
    } else if (!a.publish_ws.empty()) {
        pub = std::make_shared<websocket::stream<tcp::socket>>(ioc);
        bb::error_code ec;
        pub->next_layer().connect(server, ec);
        if (!ec) pub->handshake("127.0.0.1", a.publish_ws, ec);
        if (!ec) pub->write(net::buffer(a.publish_text), ec);
        if (ec) std::cerr << a.label << ": publisher: " << ec.message() << "\n";
    }
    while (t.delivered < t.ready && Clock::now() - p0 < std::chrono::seconds(60))
        ioc.run_one_for(std::chrono::milliseconds(200));
    const double deliver_ms = std::chrono::duration<double, std::milli>(Clock::now() - p0).count();

    const double per_conn = t.ready ? static_cast<double>(rss1 - rss0) / static_cast<double>(t.ready) : 0;
    std::printf("| %s | %zu | %zu | %.1f | %.0f | %.0f | %.1f | %.1f | %.2f | %zu | %.0f |\n", a.label.c_str(), t.ready,
                a.sources, connect_s, static_cast<double>(t.ready) / connect_s,
                t.ready ? 1e6 * connect_cpu / static_cast<double>(t.ready) : 0.0, static_cast<double>(rss0) / 1024.0,
                static_cast<double>(rss1) / 1024.0, per_conn, t.delivered, deliver_ms);
    std::fflush(stdout);
    return t.failed || t.delivered != t.ready ? 1 : 0;
}
