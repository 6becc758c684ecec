#pragma once
// What every part of the server shares (Beast's chat-multi calls it shared_state): settings, the
// io_context, the session table the Transport looks ids up in, the connection caps, counters and
// the batched write pass. The listener and start/stop are in server.cpp, the sessions in
// http_session.* and websocket_session.*. Internal to wsgate::beast.
#include <wsgate/beast/server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace wsgate::beast {

namespace net = boost::asio;
using tcp = net::ip::tcp;

class WsSession;

struct Server::Impl {
    explicit Impl(ServerSettings s)
        : settings(std::move(s)), ioc(static_cast<int>(std::max<std::size_t>(1, settings.threads))),
          acceptor(net::make_strand(ioc)), accept_timer(acceptor.get_executor()),
          heartbeat_timer(acceptor.get_executor()) {}

    ServerSettings settings;
    // Declared before `ioc`: sessions that handlers still hold give their slot back when the
    // io_context is destroyed, so the caps must outlive it.
    std::mutex caps_mu;
    std::size_t open_sessions = 0;
    std::unordered_map<std::string, std::size_t> open_per_address;
    enum class Refusal { none, node_cap, address_cap };
    Refusal take_slot(const std::string& address);
    void release_slot(const std::string& address);

    net::io_context ioc;
    tcp::acceptor acceptor;
    std::weak_ptr<Gateway> gateway;
    std::map<std::string, HttpHandler> routes;  // "METHOD path"
    std::vector<std::thread> threads;
    std::atomic<unsigned short> bound_port{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> coalesced{0};
    std::atomic<bool> accepting{false};
    ServerMetrics metrics;
    // acceptor's strand only
    net::steady_timer accept_timer;
    std::chrono::milliseconds accept_delay{0};
    // The heartbeat sweep (acceptor's strand): pings quiet peers and ends silent ones, for all
    // sessions at once (see WsSession::heartbeat_check).
    net::steady_timer heartbeat_timer;
    void start_heartbeat();
    void heartbeat_sweep();

    mutable std::shared_mutex sessions_mu;
    // Keyed by a view of the session's own id (WsSession::id()): the entry holds the session, so
    // the key lives as long as the entry, and an idle connection pays for one copy of its id.
    std::unordered_map<std::string_view, std::shared_ptr<WsSession>> sessions;

    std::mutex state_mu;
    std::condition_variable state_cv;
    bool started = false;
    bool stopping = false;
    bool stopped = false;

    // With one io thread, connections that received frames are written in one posted pass
    // (after the current handler, e.g. a whole fan-out, has queued everything), instead of one
    // post per connection; frames from several publishes then leave in one socket write.
    std::mutex dirty_mu;
    std::vector<std::shared_ptr<WsSession>> dirty;
    bool flush_posted = false;
    void schedule_write(std::shared_ptr<WsSession> s);
    void flush_dirty();

    void do_accept();
    void on_accept(boost::system::error_code ec, tcp::socket socket);
    std::shared_ptr<WsSession> find(const ConnectionId& id) const {
        std::shared_lock lk(sessions_mu);
        auto it = sessions.find(id);
        return it == sessions.end() ? nullptr : it->second;
    }
    void erase(const ConnectionId& id, const WsSession* s);
};

}  // namespace wsgate::beast
