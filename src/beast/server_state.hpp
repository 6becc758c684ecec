#pragma once
// What every part of the server shares (Beast's chat-multi calls it shared_state): settings, the
// io_context, the session table the Transport looks ids up in, the connection caps, counters and
// the batched write pass. The listener and start/stop are in server.cpp, the sessions in
// http_session.* and websocket_session.*. Internal to wsgate::beast.
#include <wsgate/beast/server.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
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

/**
 * One io thread: its own io_context, run by that thread alone, so the connections it serves need
 * no strand; and its own batched write pass, so that a publish fanning out to connections of
 * several threads takes each thread's lock once per connection and no lock all threads share.
 */
struct Worker {
    Worker() : ioc(1), guard(net::make_work_guard(ioc)), flush_timer(ioc) {}

    net::io_context ioc;
    net::executor_work_guard<net::io_context::executor_type> guard;  // run() waits for work

    // Connections of this thread that received frames are written in one posted pass (after the
    // current handler, e.g. a whole fan-out, has queued everything), instead of one post per
    // connection; frames from several publishes then leave in one socket write.
    std::mutex dirty_mu;
    std::vector<std::shared_ptr<WsSession>> dirty;
    bool flush_posted = false;
    // this thread only
    // The pass waits while this thread's connections keep completing reads (a burst of
    // publishes being read, one hop at a time), so their frames leave in the same writes; at
    // most pass_waits_max extra rounds of three hops and pass_wait_max after it was due.
    static constexpr unsigned pass_waits_max = 16;
    static constexpr std::chrono::microseconds pass_wait_max{1000};
    std::uint64_t reads = 0;      // read completions of this thread's connections, ever
    std::uint64_t pass_seen = 0;  // `reads` when the pass last looked
    unsigned pass_waits = 0;
    std::chrono::steady_clock::time_point pass_due;
    net::steady_timer flush_timer;                    // ServerSettings::flush_delay
    std::vector<std::shared_ptr<WsSession>> writing;  // the pass in progress (capacity kept)
};

struct Server::Impl {
    explicit Impl(ServerSettings s)
        : settings(std::move(s)), workers(make_workers(settings.threads)), ioc(workers.front()->ioc),
          acceptor(ioc), accept_timer(ioc), heartbeat_timer(ioc) {}
    ~Impl() {
        // Sessions hold sockets of their thread's io_context: gone before any io_context is.
        sessions.clear();
        for (auto& w : workers) {
            w->dirty.clear();
            w->writing.clear();
        }
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    static std::vector<std::unique_ptr<Worker>> make_workers(std::size_t n) {
        std::vector<std::unique_ptr<Worker>> w;
        for (std::size_t i = 0; i < std::max<std::size_t>(1, n); ++i) w.push_back(std::make_unique<Worker>());
        return w;
    }

    ServerSettings settings;
    // Declared before `ioc`: sessions that handlers still hold give their slot back when the
    // io_context is destroyed, so the caps must outlive it.
    std::mutex caps_mu;
    std::size_t open_sessions = 0;
    std::unordered_map<std::string, std::size_t> open_per_address;
    enum class Refusal { none, node_cap, address_cap };
    Refusal take_slot(const std::string& address);
    void release_slot(const std::string& address);

    std::vector<std::unique_ptr<Worker>> workers;
    // The first thread's io_context: the listener, the heartbeat sweep and the host's timers.
    net::io_context& ioc;
    std::size_t next_worker = 0;  // acceptor only: new connections go round the threads
    /// The io thread whose io_context `ex` belongs to.
    Worker& worker_of(const net::any_io_executor& ex) {
        auto& ctx = net::query(ex, net::execution::context);
        for (auto& w : workers)
            if (&w->ioc == &ctx) return *w;
        return *workers.front();
    }
    tcp::acceptor acceptor;
    std::weak_ptr<Gateway> gateway;
    std::map<std::string, HttpHandler> routes;  // "METHOD path"
    std::vector<std::thread> threads;
    std::atomic<unsigned short> bound_port{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> coalesced{0};
    std::atomic<bool> accepting{false};
    ServerMetrics metrics;
    // the first thread only
    net::steady_timer accept_timer;
    std::chrono::milliseconds accept_delay{0};
    // The heartbeat sweep (first thread): pings quiet peers and ends silent ones, for all
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

    // The write pass of `w` (see Worker): schedule_write marks a session that has frames queued.
    void schedule_write(Worker& w, std::shared_ptr<WsSession> s);
    void flush_dirty(Worker& w);
    void settle_pass(Worker& w);

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
