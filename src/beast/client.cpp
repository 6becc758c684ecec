// The Boost.Beast WebSocket client: async internals on shared or private I/O threads, with a
// blocking facade (connect, receive with timeout, close) for tests and tools.
#include <wsgate/beast/client.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace wsgate::beast {

namespace net = boost::asio;
namespace bb = boost::beast;
namespace http = bb::http;
namespace websocket = bb::websocket;
using tcp = net::ip::tcp;

struct ClientContext::Impl {
    explicit Impl(std::size_t n) : ioc(static_cast<int>(n)), guard(net::make_work_guard(ioc)) {
        for (std::size_t i = 0; i < std::max<std::size_t>(1, n); ++i) {
            threads.emplace_back([this] {
                for (;;) {
                    try {
                        ioc.run();
                        return;
                    } catch (...) {
                    }
                }
            });
        }
    }
    ~Impl() {
        guard.reset();
        ioc.stop();
        for (auto& t : threads) {
            if (t.joinable()) t.join();
        }
    }
    net::io_context ioc;
    net::executor_work_guard<net::io_context::executor_type> guard;
    std::vector<std::thread> threads;
};

std::string_view to_string(ConnectStep s) noexcept {
    switch (s) {
        case ConnectStep::none: return "none";
        case ConnectStep::resolve: return "resolve";
        case ConnectStep::tcp_connect: return "TCP connect";
        case ConnectStep::handshake: break;
    }
    return "handshake";
}

ClientContext::ClientContext(std::size_t threads) : impl_(std::make_shared<Impl>(threads)) {}
ClientContext::~ClientContext() = default;

namespace {

struct ParsedUrl {
    std::string host;
    std::string port = "80";
    std::string target = "/";
};

bool parse_ws_url(std::string_view url, ParsedUrl& out) {
    constexpr std::string_view scheme = "ws://";
    if (url.substr(0, scheme.size()) != scheme) return false;
    url.remove_prefix(scheme.size());
    auto slash = url.find_first_of("/?");
    auto authority = url.substr(0, slash);
    if (slash != std::string_view::npos) {
        out.target = std::string{url.substr(slash)};
        if (out.target.front() == '?') out.target.insert(0, "/");
    }
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string_view::npos) return false;
        out.host = std::string{authority.substr(1, close - 1)};
        if (close + 1 < authority.size() && authority[close + 1] == ':') out.port = std::string{authority.substr(close + 2)};
    } else {
        auto colon = authority.rfind(':');
        out.host = std::string{authority.substr(0, colon)};
        if (colon != std::string_view::npos) out.port = std::string{authority.substr(colon + 1)};
    }
    return !out.host.empty() && !out.port.empty();
}

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
    Impl(ClientContext::Impl* c, ClientSettings s)
        : ctx(c), settings(std::move(s)), resolver(net::make_strand(ctx->ioc)),
          ws(resolver.get_executor()), resolve_timer(resolver.get_executor()) {}

    ClientContext::Impl* ctx;  // outlives this: handlers still holding it die in ctx's shutdown
    ClientSettings settings;
    tcp::resolver resolver;
    websocket::stream<bb::tcp_stream> ws;
    bb::flat_buffer rbuf;
    websocket::response_type res;
    net::steady_timer resolve_timer;  // the resolver has no deadline of its own
    bool resolve_timed_out = false;
    ParsedUrl url;
    MessageHandler on_msg;
    CloseHandler on_close;
    std::function<void(std::error_code)> connect_done;

    // strand only
    std::deque<std::string> out;
    bool writing = false;
    bool close_requested = false;
    bool close_started = false;
    websocket::close_reason close_reason;

    mutable std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> inbox;
    bool open = false;
    bool ended = false;
    int status = 0;
    std::string body;
    std::string proto;
    std::optional<int> close_code;
    ConnectStep failed = ConnectStep::none;

    void start(ConnectTimeouts timeouts) {
        const auto connect_deadline = std::chrono::steady_clock::now() + timeouts.connect;
        resolve_timer.expires_at(connect_deadline);
        resolve_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec) return;  // cancelled: resolved in time
            self->resolve_timed_out = true;
            self->resolver.cancel();
        });
        resolver.async_resolve(url.host, url.port, [self = shared_from_this(), timeouts, connect_deadline](boost::system::error_code ec, tcp::resolver::results_type r) {
            self->resolve_timer.cancel();
            if (self->resolve_timed_out) return self->finish_connect(std::make_error_code(std::errc::timed_out), ConnectStep::resolve);
            if (ec) return self->connected(ec, ConnectStep::resolve);
            bb::get_lowest_layer(self->ws).expires_at(connect_deadline);
            bb::get_lowest_layer(self->ws).async_connect(r, [self, timeouts](boost::system::error_code ec2, const tcp::endpoint&) {
                if (ec2) return self->connected(ec2, ConnectStep::tcp_connect);
                boost::system::error_code nd;
                bb::get_lowest_layer(self->ws).socket().set_option(tcp::no_delay(true), nd);
                bb::get_lowest_layer(self->ws).expires_never();
                websocket::stream_base::timeout t = websocket::stream_base::timeout::suggested(bb::role_type::client);
                t.handshake_timeout = timeouts.handshake;
                self->ws.set_option(t);
                self->ws.read_message_max(self->settings.max_message_bytes);
                self->ws.set_option(websocket::stream_base::decorator([hs = self->settings.headers, sp = self->settings.subprotocols](websocket::request_type& req) {
                    req.set(http::field::user_agent, "wsgate-client");
                    for (const auto& [k, v] : hs) req.set(k, v);
                    if (!sp.empty()) req.set(http::field::sec_websocket_protocol, sp);
                }));
                std::string host = self->url.host + ":" + self->url.port;
                self->ws.async_handshake(self->res, host, self->url.target, [self](boost::system::error_code ec3) {
                    self->connected(ec3, ConnectStep::handshake);
                });
            });
        });
    }

    void connected(boost::system::error_code ec, ConnectStep step) {
        // Beast reports its own deadlines as beast::error::timeout; callers see std::errc::timed_out.
        finish_connect(ec == bb::error::timeout ? std::make_error_code(std::errc::timed_out) : std::error_code{ec}, step);
    }

    void finish_connect(std::error_code ec, ConnectStep step) {
        {
            std::lock_guard lk(mu);
            if (ec) failed = step;
            status = static_cast<int>(res.result_int());
            body = res.body();
            if (auto it = res.find(http::field::sec_websocket_protocol); it != res.end()) proto = std::string{it->value()};
            if (!ec) open = true;
            else ended = true;
        }
        cv.notify_all();
        auto done = std::move(connect_done);
        if (!ec) {
            ws.text(true);
            do_read();
            do_write();
        }
        if (done) done(ec);
    }

    void do_read() {
        ws.async_read(rbuf, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            if (ec) return self->finish();
            auto data = self->rbuf.cdata();
            std::string_view text{static_cast<const char*>(data.data()), data.size()};
            if (self->on_msg) {
                self->on_msg(text);
            } else {
                {
                    std::lock_guard lk(self->mu);
                    if (self->inbox.size() >= self->settings.max_queued_receives) self->inbox.pop_front();
                    self->inbox.emplace_back(text);
                }
                self->cv.notify_all();
            }
            self->rbuf.consume(self->rbuf.size());
            self->do_read();
        });
    }

    void do_write() {
        if (writing || close_started) return;
        if (out.empty()) {
            if (close_requested) {
                close_started = true;
                ws.async_close(close_reason, [self = shared_from_this()](boost::system::error_code ec) {
                    if (ec) self->finish();
                });
            }
            return;
        }
        writing = true;
        ws.async_write(net::buffer(out.front()), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            self->writing = false;
            self->out.pop_front();
            if (ec) {
                self->out.clear();
                return;
            }
            self->do_write();
        });
    }

    void finish() {
        int code = 1006;
        std::string reason;
        if (ws.reason().code != websocket::close_code::none) {
            code = static_cast<int>(ws.reason().code);
            reason = std::string{ws.reason().reason.c_str()};
        }
        {
            std::lock_guard lk(mu);
            if (ended) return;
            open = false;
            ended = true;
            close_code = code;
        }
        cv.notify_all();
        if (on_close) on_close(code, reason);
    }
};

Client::Client(ClientSettings settings) : own_ctx_(std::make_unique<ClientContext>(1)) {
    impl_ = std::make_shared<Impl>(own_ctx_->impl().get(), std::move(settings));
}

Client::Client(ClientContext& ctx, ClientSettings settings)
    : impl_(std::make_shared<Impl>(ctx.impl().get(), std::move(settings))) {}

Client::~Client() {
    if (impl_) {
        // Cut the socket; pending handlers finish on the I/O thread and hold the impl alive.
        std::promise<void> done;
        auto fut = done.get_future();
        net::post(impl_->ws.get_executor(), [im = impl_, &done] {
            im->on_msg = nullptr;
            im->on_close = nullptr;
            im->connect_done = nullptr;  // no callback after the destructor returns
            im->resolve_timer.cancel();
            boost::system::error_code ec;
            bb::get_lowest_layer(im->ws).socket().close(ec);
            im->resolver.cancel();
            done.set_value();
        });
        fut.wait_for(std::chrono::seconds(5));
    }
    impl_.reset();
    own_ctx_.reset();
}

void Client::on_message(MessageHandler h) { impl_->on_msg = std::move(h); }
void Client::on_close(CloseHandler h) { impl_->on_close = std::move(h); }

void Client::async_connect(std::string_view url, std::function<void(std::error_code)> done,
                           std::chrono::milliseconds timeout) {
    async_connect(url, std::move(done), ConnectTimeouts{timeout, timeout});
}

void Client::async_connect(std::string_view url, std::function<void(std::error_code)> done, ConnectTimeouts timeouts) {
    if (!parse_ws_url(url, impl_->url)) {
        net::post(impl_->ws.get_executor(), [done] { done(std::make_error_code(std::errc::invalid_argument)); });
        return;
    }
    impl_->connect_done = std::move(done);
    net::dispatch(impl_->ws.get_executor(), [im = impl_, timeouts] { im->start(timeouts); });
}

std::error_code Client::connect(std::string_view url, std::chrono::milliseconds timeout) {
    auto p = std::make_shared<std::promise<std::error_code>>();
    auto f = p->get_future();
    async_connect(url, [p](std::error_code ec) { p->set_value(ec); }, timeout);
    if (f.wait_for(timeout + std::chrono::seconds(2)) != std::future_status::ready) {
        abort();
        return std::make_error_code(std::errc::timed_out);
    }
    return f.get();
}

std::error_code Client::send(std::string text) {
    if (!is_open()) return std::make_error_code(std::errc::not_connected);
    net::post(impl_->ws.get_executor(), [im = impl_, t = std::move(text)]() mutable {
        if (im->close_requested) return;
        im->out.push_back(std::move(t));
        im->do_write();
    });
    return {};
}

std::optional<std::string> Client::receive(std::chrono::milliseconds timeout) {
    std::unique_lock lk(impl_->mu);
    impl_->cv.wait_for(lk, timeout, [&] { return !impl_->inbox.empty() || impl_->ended; });
    if (impl_->inbox.empty()) return std::nullopt;
    auto s = std::move(impl_->inbox.front());
    impl_->inbox.pop_front();
    return s;
}

std::error_code Client::close(CloseCode code, std::string_view reason, std::chrono::milliseconds timeout) {
    if (!is_open()) return {};
    websocket::close_reason cr{static_cast<websocket::close_code>(static_cast<std::uint16_t>(code)), std::string{reason.substr(0, 120)}};
    net::post(impl_->ws.get_executor(), [im = impl_, cr] {
        if (im->close_requested) return;
        im->close_requested = true;
        im->close_reason = cr;
        im->do_write();
    });
    if (!wait_closed(timeout)) {
        abort();
        return std::make_error_code(std::errc::timed_out);
    }
    return {};
}

void Client::abort() {
    net::post(impl_->ws.get_executor(), [im = impl_] {
        boost::system::error_code ec;
        bb::get_lowest_layer(im->ws).socket().shutdown(tcp::socket::shutdown_both, ec);
        bb::get_lowest_layer(im->ws).socket().close(ec);
    });
}

bool Client::is_open() const noexcept {
    std::lock_guard lk(impl_->mu);
    return impl_->open;
}

int Client::handshake_status() const {
    std::lock_guard lk(impl_->mu);
    return impl_->status;
}

std::string Client::handshake_body() const {
    std::lock_guard lk(impl_->mu);
    return impl_->body;
}

ConnectStep Client::failed_step() const {
    std::lock_guard lk(impl_->mu);
    return impl_->failed;
}

std::string Client::subprotocol() const {
    std::lock_guard lk(impl_->mu);
    return impl_->proto;
}

std::optional<int> Client::close_code() const {
    std::lock_guard lk(impl_->mu);
    return impl_->close_code;
}

bool Client::wait_closed(std::chrono::milliseconds timeout) {
    std::unique_lock lk(impl_->mu);
    return impl_->cv.wait_for(lk, timeout, [&] { return impl_->ended; });
}

}  // namespace wsgate::beast
