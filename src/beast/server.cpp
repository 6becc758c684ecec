// The Boost.Beast server's lifecycle: the listener (accept loop with back-off), start/stop, the
// connection caps, counters, and the Transport entry points that find a session by id.
#include <wsgate/beast/server.hpp>

#include "http_session.hpp"
#include "server_state.hpp"
#include "websocket_session.hpp"

#include <wsgate/gateway.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <system_error>

namespace wsgate::beast {

void Server::Impl::do_accept() {
    // Each connection lives on one io thread, taken in turn; a thread runs its own io_context, so
    // no connection needs a strand.
    auto& w = *workers[next_worker++ % workers.size()];
    acceptor.async_accept(net::any_io_executor(w.ioc.get_executor()), [this](boost::system::error_code ec, tcp::socket socket) {
        on_accept(ec, std::move(socket));
    });
}

void Server::Impl::on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (!accepting.load()) return;
    if (!ec) {
        accept_delay = std::chrono::milliseconds{0};
        boost::system::error_code nd;
        socket.set_option(tcp::no_delay(true), nd);
        std::make_shared<HttpSession>(*this, std::move(socket))->run();
        return do_accept();
    }
    if (ec == net::error::operation_aborted) return;
    metrics.accept_errors.fetch_add(1, std::memory_order_relaxed);
    // A peer that gave up before accept() says nothing about this process: accept the next one.
    if (ec == net::error::connection_aborted || ec == net::error::connection_reset) return do_accept();
    // Out of descriptors (EMFILE/ENFILE) or kernel memory: an immediate retry fails the same way
    // and spins a core. Wait, doubling the delay; waiting clients stay in the listen backlog and
    // are accepted once descriptors are free again.
    accept_delay = accept_delay.count() == 0 ? settings.accept_retry_min
                                             : std::min(accept_delay * 2, settings.accept_retry_max);
    accept_delay = std::max(accept_delay, std::chrono::milliseconds{1});
    accept_timer.expires_after(accept_delay);
    accept_timer.async_wait([this](boost::system::error_code wait_ec) {
        if (wait_ec || !accepting.load()) return;
        do_accept();
    });
}

Server::Impl::Refusal Server::Impl::take_slot(const std::string& address) {
    std::lock_guard lk(caps_mu);
    if (settings.max_connections > 0 && open_sessions >= settings.max_connections) return Refusal::node_cap;
    auto& n = open_per_address[address];
    if (settings.max_connections_per_address > 0 && n >= settings.max_connections_per_address) {
        if (n == 0) open_per_address.erase(address);
        return Refusal::address_cap;
    }
    ++n;
    ++open_sessions;
    return Refusal::none;
}

void Server::Impl::release_slot(const std::string& address) {
    std::lock_guard lk(caps_mu);
    --open_sessions;
    auto it = open_per_address.find(address);
    if (it != open_per_address.end() && --it->second == 0) open_per_address.erase(it);
}

namespace {

void validate(const DeflateSettings& d) {
    auto require = [](bool ok, const char* field, const char* range, int value) {
        if (!ok)
            throw std::invalid_argument(std::string{"ServerSettings::deflate."} + field + " must be " + range +
                                        ", not " + std::to_string(value));
    };
    // zlib cannot use a window of 2^8 (Beast raises it to 9 silently); refuse it plainly.
    require(d.server_max_window_bits >= 9 && d.server_max_window_bits <= 15, "server_max_window_bits", "9..15",
            d.server_max_window_bits);
    require(d.client_max_window_bits >= 9 && d.client_max_window_bits <= 15, "client_max_window_bits", "9..15",
            d.client_max_window_bits);
    require(d.level >= 0 && d.level <= 9, "level", "0..9", d.level);
    require(d.memory_level >= 1 && d.memory_level <= 9, "memory_level", "1..9", d.memory_level);
}

void validate(const ServerSettings& s) {
    if (s.flush_delay.count() < 0 || s.flush_delay > std::chrono::seconds(1))
        throw std::invalid_argument("ServerSettings::flush_delay must be 0..1 s, not " +
                                    std::to_string(s.flush_delay.count()) + " us");
    if (s.threads > 1024)
        throw std::invalid_argument("ServerSettings::threads must be 0..1024, not " + std::to_string(s.threads));
    for (int cpu : s.thread_cpus)
        if (cpu < 0 || cpu >= CPU_SETSIZE)
            throw std::invalid_argument("ServerSettings::thread_cpus: no CPU " + std::to_string(cpu));
}

// Binds io thread `i` to `cpus[i % cpus.size()]` (none when empty). A CPU this process may not
// use leaves the thread where it was.
void pin_thread(const std::vector<int>& cpus, std::size_t i) {
    if (cpus.empty()) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[i % cpus.size()], &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

}  // namespace

Server::Server(ServerSettings settings) {
    validate(settings.deflate);
    validate(settings);
    impl_ = std::make_shared<Impl>(std::move(settings));
}

Server::~Server() {
    try {
        stop();
    } catch (...) {
    }
}

void Server::attach(const std::shared_ptr<Gateway>& gateway) { impl_->gateway = gateway; }

void Server::route(std::string method, std::string path, HttpHandler handler) {
    impl_->routes[method + " " + path] = std::move(handler);
}

const ServerSettings& Server::settings() const noexcept { return impl_->settings; }

void Server::start() {
    auto& im = *impl_;
    {
        std::lock_guard lk(im.state_mu);
        if (im.started) return;
        im.started = true;
    }
    // Asio throws boost::system::system_error; the documented contract is std::system_error.
    try {
        tcp::endpoint ep{net::ip::make_address(im.settings.address), im.settings.port};
        im.acceptor.open(ep.protocol());
        im.acceptor.set_option(net::socket_base::reuse_address(true));
        im.acceptor.bind(ep);
        im.acceptor.listen(net::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
        throw std::system_error(static_cast<std::error_code>(e.code()),
                                "listen on " + im.settings.address + ":" + std::to_string(im.settings.port));
    }
    im.bound_port = im.acceptor.local_endpoint().port();
    im.accepting = true;
    net::dispatch(im.acceptor.get_executor(), [&im] {
        im.do_accept();
        im.start_heartbeat();
    });
    for (std::size_t i = 0; i < im.workers.size(); ++i) {
        im.threads.emplace_back([&im, i] {
            pin_thread(im.settings.thread_cpus, i);
            for (;;) {
                try {
                    im.workers[i]->ioc.run();
                    return;
                } catch (...) {
                    // A handler threw: keep serving the other connections.
                }
            }
        });
    }
}

unsigned short Server::port() const noexcept { return impl_->bound_port.load(); }

void Server::wait() {
    std::unique_lock lk(impl_->state_mu);
    impl_->state_cv.wait(lk, [&] { return impl_->stopped || !impl_->started; });
}

void Server::stop() {
    auto& im = *impl_;
    {
        std::unique_lock lk(im.state_mu);
        if (!im.started || im.stopped) return;
        if (im.stopping) {
            im.state_cv.wait(lk, [&] { return im.stopped; });
            return;
        }
        im.stopping = true;
    }
    im.accepting = false;
    net::post(im.acceptor.get_executor(), [&im] {
        boost::system::error_code ec;
        im.acceptor.close(ec);
        im.accept_timer.cancel();
        im.heartbeat_timer.cancel();
    });
    std::vector<ConnectionId> ids;
    {
        std::shared_lock lk(im.sessions_mu);
        for (const auto& kv : im.sessions) ids.emplace_back(kv.first);
    }
    auto gw = im.gateway.lock();
    for (const auto& id : ids) {
        if (gw) gw->end(id, EndReason::shutdown, "server shutdown");
        close(id, CloseCode::going_away, "server shutdown");  // ids the Gateway did not know yet
    }
    gw.reset();
    {
        std::unique_lock lk(im.sessions_mu);
        auto deadline = std::chrono::steady_clock::now() + im.settings.shutdown_timeout;
        while (!im.sessions.empty() && std::chrono::steady_clock::now() < deadline) {
            lk.unlock();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            lk.lock();
        }
    }
    for (auto& w : im.workers) {
        w->guard.reset();
        w->ioc.stop();
    }
    for (auto& t : im.threads) {
        if (t.joinable()) t.join();
    }
    {
        std::unique_lock lk(im.sessions_mu);
        im.sessions.clear();
    }
    {
        std::lock_guard lk(im.state_mu);
        im.stopped = true;
    }
    im.state_cv.notify_all();
}

std::size_t Server::connection_count() const {
    std::shared_lock lk(impl_->sessions_mu);
    return impl_->sessions.size();
}

std::uint64_t Server::dropped_frames() const noexcept { return impl_->dropped.load(); }

std::uint64_t Server::coalesced_frames() const noexcept { return impl_->coalesced.load(); }

const ServerMetrics& Server::metrics() const noexcept { return impl_->metrics; }

std::string Server::prometheus_text() const {
    const auto& m = impl_->metrics;
    std::string out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out += std::string{"# HELP wsgate_"} + name + ' ' + help + "\n# TYPE wsgate_" + name + " counter\nwsgate_" +
               name + ' ' + std::to_string(v) + '\n';
    };
    auto get = [](const ServerMetrics::Counter& c) { return c.load(std::memory_order_relaxed); };
    counter("accept_errors_total", "Failed accept() calls (out of descriptors, ...).", get(m.accept_errors));
    out += "# HELP wsgate_upgrades_refused_total WebSocket upgrades answered 503 by a connection cap.\n"
           "# TYPE wsgate_upgrades_refused_total counter\n"
           "wsgate_upgrades_refused_total{reason=\"node_cap\"} " + std::to_string(get(m.refused_node_cap)) + "\n"
           "wsgate_upgrades_refused_total{reason=\"address_cap\"} " + std::to_string(get(m.refused_address_cap)) + "\n";
    counter("http_header_too_large_total", "Requests answered 431.", get(m.header_too_large));
    counter("http_bad_requests_total", "Requests that did not parse, answered 400.", get(m.bad_requests));
    counter("pongs_total", "Pongs received from clients.", get(m.pongs));
    counter("pings_total", "Keep-alive pings sent to quiet clients.", get(m.pings));
    counter("deflate_connections_total", "WebSocket handshakes that negotiated permessage-deflate.",
            get(m.deflate_accepted));
    counter("dropped_frames_total", "Frames dropped because a connection's queue was full.", dropped_frames());
    counter("coalesced_frames_total", "Frames sent in a socket write shared with other frames.", coalesced_frames());
    counter("data_writes_total", "Socket writes of queued messages.", get(m.data_writes));
    return out;
}

SendStatus Server::send(const ConnectionId& id, const Payload& payload) {
    if (!payload) return SendStatus::error;
    auto s = impl_->find(id);
    if (!s) return SendStatus::gone;
    // One publish sent to many connections one by one is framed once (see frame_for).
    return s->enqueue(detail::frame_for(payload));
}

void Server::send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) {
    if (!payload) {
        std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), out.size())),
                  SendStatus::error);
        return;
    }
    // Framed once; every connection queues the same bytes.
    const auto frame = detail::frame_for(payload);
    // enqueue() only locks the session's queue and posts; holding the table lock is cheaper
    // than copying every session pointer out.
    std::shared_lock lk(impl_->sessions_mu);
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) {
        auto it = impl_->sessions.find(ids[i]);
        out[i] = it == impl_->sessions.end() ? SendStatus::gone : it->second->enqueue(frame);
    }
}

void Server::close(const ConnectionId& id, CloseCode code, std::string_view reason) {
    if (auto s = impl_->find(id)) s->close(code, reason);
}

}  // namespace wsgate::beast
