// Loopback load generator: N subscriber connections, one publisher, M events with a send
// timestamp in each; at most W events in flight (an event completes when all N received it).
// Reports deliveries/s, latency percentiles, server CPU seconds and RSS per connection (from
// /proc/<server-pid>), and the generator's own CPU use.
//
// The subscribers are plain sockets read by one thread with epoll, each read() taking every frame
// the socket holds (raw_ws.hpp), so the generator spends far less per delivery than either server
// and the server sets the pace. (Until 0.2 they were wsgate::beast::Client objects, one Beast
// read and one callback per message; the generator then saturated its core first.)
//
//   bench_load_generator --mode wsgate|bare --port P --server-pid PID -n 1000 -m 200 [-w 8] [--size 64]
//       [--alloc-file PATH] [--syscalls 0|1]
//
// With one server, the row also gives the server's CPU ms per 1,000 deliveries and, across the
// publish phase only, its allocations per delivery (--alloc-file: the server's own count, which
// it writes to PATH on SIGUSR1; see alloc_counter.hpp) and its system calls per delivery
// (--syscalls 1: `perf stat -e raw_syscalls:sys_enter -p PID`, enabled just before the first
// publish and disabled just after the last completion). A figure that cannot be had prints "-".
//
// Against several nodes of the demo server (examples/realtime_server; scaleout.sh drives it):
//
//   bench_load_generator --mode wsgate --ports P0,P1,P2 --server-pid PID0,PID1,PID2 [--redis-pid PID]
//       --topic leaderboard:bench --token-secret SECRET --publish http --admin-key KEY --row scaleout ...
//
// Subscriber i connects to node i % k with its own HS256 user token (`sub` bench-<i>, permission
// read_leaderboard); events go out as the demo's server-side publish, POST /publish with the admin
// key, over one keep-alive HTTP connection to node 0. The scale-out row adds the p99 of deliveries
// on node 0 (local) and on the other nodes (cross-node, through the bus), the time until the last
// member got an event, the POST's own round trip, and Redis's CPU per 1,000 deliveries (utime +
// stime of --redis-pid across the publish phase only).
#include "raw_ws.hpp"

#ifdef WSGATE_BENCH_HAVE_AUTH
#include <wsgate/auth/jwt.hpp>
#endif

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    std::string mode = "wsgate";
    std::vector<unsigned> ports;
    std::vector<long> server_pids;
    long redis_pid = 0;
    std::size_t n = 1000;
    std::size_t m = 200;
    std::size_t window = 8;
    std::size_t size = 64;
    std::string label;
    std::string topic = "bench";
    std::string token_secret;  // mint a user token per subscriber (the demo's session secret)
    std::string publish = "ws";  // ws: {"type":"publish"} frames; http: POST /publish
    std::string admin_key;
    std::string row = "load";  // load: run.sh's row; scaleout: scaleout.sh's row
    std::string alloc_file;    // where the server writes its allocation count on SIGUSR1
    bool syscalls = false;     // count the server's system calls with perf stat
};

template <class T>
std::vector<T> split_numbers(const std::string& v) {
    std::vector<T> out;
    std::stringstream in(v);
    std::string part;
    while (std::getline(in, part, ','))
        if (!part.empty()) out.push_back(static_cast<T>(std::stol(part)));
    return out;
}

long long now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

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

double procs_cpu_seconds(const std::vector<long>& pids) {
    double s = 0;
    for (long p : pids) s += proc_cpu_seconds(p);
    return s;
}

long proc_rss_kib(long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

long procs_rss_kib(const std::vector<long>& pids) {
    long s = 0;
    for (long p : pids) s += proc_rss_kib(p);
    return s;
}

double self_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Whether `pid` catches `sig` or blocks it in some thread, so sending it will not end the process
// (an older server binary without the handler would die of SIGUSR1). A process that takes
// signals with sigwait blocks them in every thread, but /proc shows them unblocked in the
// thread that waits, so each thread's mask is read.
bool handles_signal(long pid, int sig) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    unsigned long long mask = 0;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::ifstream f(it->path() / "status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("SigBlk:", 0) == 0 || line.rfind("SigCgt:", 0) == 0)
                mask |= std::stoull(line.substr(7), nullptr, 16);
        }
    }
    return (mask >> (sig - 1)) & 1U;
}

// Asks the server for its allocation count: SIGUSR1 makes it write the count to `path` (whole,
// by rename). The file is removed before the signal and after the read, so its appearance is
// the answer. Waits up to 2 s.
std::optional<std::uint64_t> server_allocations(long pid, const std::string& path) {
    ::unlink(path.c_str());
    if (::kill(static_cast<pid_t>(pid), SIGUSR1) != 0) return std::nullopt;
    const auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline) {
        std::ifstream f(path);
        std::uint64_t v = 0;
        if (f >> v) {
            ::unlink(path.c_str());
            return v;
        }
        std::this_thread::sleep_for(1ms);
    }
    return std::nullopt;
}

// A process's system calls counted by `perf stat -e raw_syscalls:sys_enter -p PID`. perf starts
// with the event disabled and enables or disables it on a command through a control pipe,
// acknowledging each one, so the count covers exactly the span from start() to stop().
class SyscallCounter {
public:
    SyscallCounter() = default;
    SyscallCounter(const SyscallCounter&) = delete;
    SyscallCounter& operator=(const SyscallCounter&) = delete;
    ~SyscallCounter() {
        if (perf_ > 0) {
            ::kill(perf_, SIGINT);
            ::waitpid(perf_, nullptr, 0);
        }
        close_pipes();
        if (!out_.empty()) ::unlink(out_.c_str());
    }

    /// Starts perf on `pid` and returns once it counts; false if perf could not (the reason is on stderr).
    bool start(long pid) {
        char out[] = "/tmp/bench-syscalls-XXXXXX";
        const int ofd = ::mkstemp(out);
        if (ofd < 0) return false;
        ::close(ofd);
        out_ = out;
        int ctl[2], ack[2];
        if (::pipe2(ctl, O_CLOEXEC) != 0) return false;
        if (::pipe2(ack, O_CLOEXEC) != 0) {
            ::close(ctl[0]);
            ::close(ctl[1]);
            return false;
        }
        // Everything the child needs is built before fork: after it, only async-signal-safe calls.
        const std::string control = "fd:" + std::to_string(ctl[0]) + "," + std::to_string(ack[1]);
        const std::string target = std::to_string(pid);
        std::vector<std::string> args = {"perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-D", "-1",
                                         "--control", control, "-o", out_, "-p", target};
        std::vector<char*> argv;
        for (auto& s : args) argv.push_back(s.data());
        argv.push_back(nullptr);
        const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        perf_ = ::fork();
        if (perf_ == 0) {
            ::fcntl(ctl[0], F_SETFD, 0);
            ::fcntl(ack[1], F_SETFD, 0);
            // perf reports each control command on stderr; failing to start shows as no "ack".
            if (devnull >= 0) {
                ::dup2(devnull, STDOUT_FILENO);
                ::dup2(devnull, STDERR_FILENO);
            }
            ::signal(SIGPIPE, SIG_DFL);
            ::execvp("perf", argv.data());
            ::_exit(127);
        }
        if (devnull >= 0) ::close(devnull);
        ::close(ctl[0]);
        ::close(ack[1]);
        ctl_ = ctl[1];
        ack_ = ack[0];
        if (perf_ < 0) {
            close_pipes();
            return false;
        }
        if (!command("enable")) {
            std::cerr << "perf stat did not start counting; no system call count\n";
            return false;
        }
        return true;
    }

    /// Stops counting, ends perf and returns the count, if perf gave one.
    std::optional<std::uint64_t> stop() {
        const bool disabled = command("disable");
        close_pipes();
        if (perf_ <= 0) return std::nullopt;
        ::kill(perf_, SIGINT);
        ::waitpid(perf_, nullptr, 0);
        perf_ = -1;
        if (!disabled) return std::nullopt;
        // CSV: "<count>,<unit>,raw_syscalls:sys_enter,..."; the count is "<not counted>" on failure.
        std::ifstream f(out_);
        std::string line;
        while (std::getline(f, line)) {
            if (line.find("raw_syscalls:sys_enter") == std::string::npos) continue;
            std::uint64_t v = 0;
            const auto r = std::from_chars(line.data(), line.data() + line.size(), v);
            if (r.ec == std::errc{} && r.ptr != line.data() + line.size() && *r.ptr == ',') return v;
        }
        return std::nullopt;
    }

private:
    // Sends a control command and waits (up to 5 s) for perf's "ack".
    bool command(const char* cmd) {
        if (ctl_ < 0) return false;
        const std::string line = std::string(cmd) + "\n";
        if (::write(ctl_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return false;
        pollfd p{ack_, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) return false;
        char buf[16];
        const ssize_t n = ::read(ack_, buf, sizeof buf);
        return n >= 3 && std::string_view(buf, 3) == "ack";
    }
    void close_pipes() {
        if (ctl_ >= 0) ::close(ctl_);
        if (ack_ >= 0) ::close(ack_);
        ctl_ = ack_ = -1;
    }

    pid_t perf_ = -1;
    int ctl_ = -1;
    int ack_ = -1;
    std::string out_;
};

// Reads the integer after `"key":` without a JSON parse (the generator must stay cheap).
bool find_int(std::string_view s, std::string_view key, long long& out) {
    auto p = s.find(key);
    if (p == std::string_view::npos) return false;
    const char* b = s.data() + p + key.size();
    return std::from_chars(b, s.data() + s.size(), out).ec == std::errc{};
}

// The p-th percentile in ms of microsecond samples (reorders `v`).
double pct_ms(std::vector<std::uint32_t>& v, double p) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k] / 1000.0;
}

// POST /publish over one keep-alive connection (the demo's server-side publish with the admin key).
class HttpPublisher {
public:
    std::error_code connect(unsigned port) {
        boost::system::error_code ec;
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
        if (!ec) socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
        host_ = "127.0.0.1:" + std::to_string(port);
        return ec;
    }
    /// The response status, or 0 if the connection failed (`error` says why).
    int post(const std::string& target, std::string body, const std::string& admin_key, std::string& error) {
        namespace http = boost::beast::http;
        http::request<http::string_body> req{http::verb::post, target, 11};
        req.set(http::field::host, host_);
        req.set(http::field::content_type, "application/json");
        req.set("X-Admin-Key", admin_key);
        req.keep_alive(true);
        req.body() = std::move(body);
        req.prepare_payload();
        boost::system::error_code ec;
        http::write(socket_, req, ec);
        http::response<http::string_body> res;
        if (!ec) http::read(socket_, buffer_, res, ec);
        if (ec) {
            error = ec.message();
            return 0;
        }
        if (res.result_int() != 200) error = res.body();
        return static_cast<int>(res.result_int());
    }

private:
    boost::asio::io_context ioc_;
    boost::asio::ip::tcp::socket socket_{ioc_};
    boost::beast::flat_buffer buffer_;
    std::string host_;
};

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--mode") a.mode = v;
        else if (k == "--port" || k == "--ports") a.ports = split_numbers<unsigned>(v);
        else if (k == "--server-pid") a.server_pids = split_numbers<long>(v);
        else if (k == "--redis-pid") a.redis_pid = std::stol(v);
        else if (k == "-n") a.n = std::stoul(v);
        else if (k == "-m") a.m = std::stoul(v);
        else if (k == "-w") a.window = std::stoul(v);
        else if (k == "--size") a.size = std::stoul(v);
        else if (k == "--label") a.label = v;
        else if (k == "--topic") a.topic = v;
        else if (k == "--token-secret") a.token_secret = v;
        else if (k == "--publish") a.publish = v;
        else if (k == "--admin-key") a.admin_key = v;
        else if (k == "--row") a.row = v;
        else if (k == "--alloc-file") a.alloc_file = v;
        else if (k == "--syscalls") a.syscalls = v != "0";
    }
    // A write to perf's control pipe after perf has exited must fail, not end the generator.
    std::signal(SIGPIPE, SIG_IGN);
    if (a.ports.empty()) {
        std::cerr << "--port or --ports is required\n";
        return 1;
    }
    const bool wsgate_mode = a.mode == "wsgate";
    const bool http_publish = a.publish == "http";
    const std::size_t nodes = a.ports.size();
#ifdef WSGATE_BENCH_HAVE_AUTH
    const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch() + std::chrono::hours{1})
                         .count();
    std::unique_ptr<wsgate::jwt::SigningKey> token_key;
    if (!a.token_secret.empty())
        token_key = std::make_unique<wsgate::jwt::SigningKey>(
            wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, a.token_secret));
#else
    if (!a.token_secret.empty()) {
        std::cerr << "--token-secret: this build has no wsgate::auth\n";
        return 1;
    }
#endif
    // One user per subscriber (the demo allows 20 connections per user), reading leaderboards.
    auto sub_target = [&]([[maybe_unused]] std::size_t i) {
        std::string url = wsgate_mode ? "/ws" : "/sub";
#ifdef WSGATE_BENCH_HAVE_AUTH
        if (token_key)
            url += "?token=" + wsgate::jwt::sign({{"sub", "bench-" + std::to_string(i)},
                                                   {"permissions", {"read_leaderboard", "read_events"}},
                                                   {"exp", exp}},
                                                  *token_key);
#endif
        return url;
    };
    const std::string subscribe_frame = R"({"type":"subscribe","topic":")" + a.topic + "\"}";

    const long rss0 = procs_rss_kib(a.server_pids);

    // State shared with the I/O thread.
    std::vector<std::atomic<std::uint32_t>> received(a.m);
    std::vector<std::atomic<long long>> sent_ns(a.m);
    // Delivery latencies on node 0 (where events are published) and on the other nodes; the time
    // from publishing an event until its last member got it. Written by the I/O thread only, read
    // once it has stopped.
    std::vector<std::uint32_t> lat_local, lat_remote, last_member_us;
    lat_local.reserve(a.n / nodes * a.m + a.m);
    lat_remote.reserve(a.n * a.m - a.n / nodes * a.m);
    last_member_us.reserve(a.m);
    std::mutex mu;
    std::condition_variable cv;
    std::size_t subscribed = 0, completed = 0;
    std::string io_error;  // a subscriber closed or broke the protocol
    std::atomic<std::size_t> next_event{0};
    std::atomic<long long> last_rx_ns{0};
    std::string pad(a.size > 40 ? a.size - 40 : 1, 'x');
    // http: the publisher thread's permits (events it may still put in flight).
    std::mutex pmu;
    std::condition_variable pcv;
    std::size_t permits = std::min(a.window, a.m);
    bool publish_stop = false;

    auto event_data = [&](std::size_t seq) {
        const long long t = now_ns();
        sent_ns[seq].store(t, std::memory_order_relaxed);
        return "{\"seq\":" + std::to_string(seq) + ",\"t\":" + std::to_string(t) + ",\"p\":\"" + pad + "\"}";
    };
    auto make_event = [&](std::size_t seq) {
        std::string ev = event_data(seq);
        if (wsgate_mode) return R"({"type":"publish","topic":")" + a.topic + "\",\"data\":" + ev + "}";
        return ev;
    };

    // The WebSocket publisher: one socket written by the main thread (the first window) and by the
    // I/O thread (an event each time one completes), so its writes take a lock.
    int pub_fd = -1;
    std::mutex pub_mu;
    auto publish = [&](std::size_t seq) {
        const std::string frame = wsgate::bench::masked_frame(1, make_event(seq));
        std::lock_guard lk(pub_mu);
        if (!wsgate::bench::write_all(pub_fd, frame)) std::cerr << "publisher: " << std::strerror(errno) << "\n";
    };

    // Subscribers are raw sockets read on one thread with epoll (raw_ws.hpp): one read() per
    // ready socket takes every frame it holds, so the generator's cost per delivery stays well
    // under the server's and the server, not the generator, sets the pace.
    struct Sub {
        int fd = -1;
        bool local = false;
        wsgate::bench::FrameReader reader;
    };
    std::vector<Sub> subs(a.n + 1);  // the last one is the publisher's socket (its replies)
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        std::cerr << "epoll_create1: " << std::strerror(errno) << "\n";
        return 1;
    }
    auto watch = [&](std::size_t i, int fd) {
        subs[i].fd = fd;
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        return ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    auto on_text = [&](std::size_t i, std::string_view text) {
        if (i == a.n) {
            // The publisher hears only of failures (a publish without an id gets no ack).
            if (text.find("\"error\"") != std::string_view::npos) {
                std::lock_guard lk(mu);
                if (io_error.empty()) io_error = "publisher got " + std::string(text.substr(0, 200));
                cv.notify_all();
            }
            return;
        }
        long long seq = -1, t = 0;
        if (!find_int(text, "\"seq\":", seq) || !find_int(text, "\"t\":", t)) {
            if (text.find("\"ack\"") != std::string_view::npos) {
                std::lock_guard lk(mu);
                ++subscribed;
                cv.notify_all();
            }
            return;
        }
        long long rx = now_ns();
        last_rx_ns.store(rx, std::memory_order_relaxed);
        (subs[i].local ? lat_local : lat_remote).push_back(static_cast<std::uint32_t>(std::max(0LL, (rx - t) / 1000)));
        if (seq < 0 || static_cast<std::size_t>(seq) >= a.m) return;
        if (received[static_cast<std::size_t>(seq)].fetch_add(1, std::memory_order_relaxed) + 1 == a.n) {
            const long long sent = sent_ns[static_cast<std::size_t>(seq)].load(std::memory_order_relaxed);
            last_member_us.push_back(static_cast<std::uint32_t>(std::max(0LL, (rx - sent) / 1000)));
            if (http_publish) {
                std::lock_guard plk(pmu);
                ++permits;
                pcv.notify_one();
            } else {
                std::size_t k = next_event.fetch_add(1);
                if (k < a.m) publish(k);
            }
            std::lock_guard lk(mu);
            ++completed;
            cv.notify_all();
        }
    };
    std::atomic<bool> io_stop{false};
    std::thread io_thread([&] {
        std::vector<epoll_event> events(512);
        std::vector<char> buf(1 << 17);
        auto broken = [&](std::size_t i, const std::string& why) {
            ::epoll_ctl(ep, EPOLL_CTL_DEL, subs[i].fd, nullptr);
            std::lock_guard lk(mu);
            if (io_error.empty())
                io_error = (i == a.n ? std::string("publisher: ") : "subscriber " + std::to_string(i) + ": ") + why;
            cv.notify_all();
        };
        while (!io_stop.load(std::memory_order_relaxed)) {
            const int k = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
            for (int e = 0; e < k; ++e) {
                const auto i = static_cast<std::size_t>(events[static_cast<std::size_t>(e)].data.u64);
                Sub& s = subs[i];
                const ssize_t r = ::read(s.fd, buf.data(), buf.size());
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (r <= 0) {
                    broken(i, r == 0 ? "closed by the server" : std::strerror(errno));
                    continue;
                }
                bool closed = false;
                const bool ok = s.reader.feed(buf.data(), static_cast<std::size_t>(r), [&](std::uint8_t op, std::string_view payload) {
                    if (op == 1) on_text(i, payload);
                    else if (op == 9) {
                        // The publisher's socket is written by other threads too.
                        std::unique_lock lk(pub_mu, std::defer_lock);
                        if (i == a.n) lk.lock();
                        wsgate::bench::write_all(s.fd, wsgate::bench::masked_frame(10, payload));
                    } else if (op == 8) closed = true;
                });
                if (!ok) broken(i, "a frame against RFC 6455");
                else if (closed) broken(i, "close frame from the server");
            }
        }
    });
    auto stop_io = [&] {
        io_stop = true;
        if (io_thread.joinable()) io_thread.join();
    };
    auto fail = [&](const std::string& why) {
        std::cerr << why << "\n";
        stop_io();
        return 1;
    };

    // Connect one at a time (each handshake is a loopback round trip), subscribe, then wait for
    // every acknowledgement.
    auto t_connect = Clock::now();
    for (std::size_t i = 0; i < a.n; ++i) {
        std::string error;
        const int fd = wsgate::bench::ws_connect(a.ports[i % nodes], sub_target(i), error);
        if (fd < 0) return fail("subscriber " + std::to_string(i) + ": " + error);
        subs[i].local = i % nodes == 0;
        if (wsgate_mode && !wsgate::bench::write_all(fd, wsgate::bench::masked_frame(1, subscribe_frame)))
            return fail("subscriber " + std::to_string(i) + ": " + std::strerror(errno));
        if (!watch(i, fd)) return fail(std::string("epoll_ctl: ") + std::strerror(errno));
        if (!wsgate_mode) {
            std::lock_guard lk(mu);
            ++subscribed;
        }
    }
    {
        std::unique_lock lk(mu);
        cv.wait_for(lk, 60s, [&] { return subscribed >= a.n || !io_error.empty(); });
        if (subscribed < a.n || !io_error.empty()) {
            const std::string why = "subscribed " + std::to_string(subscribed) + " of " + std::to_string(a.n) +
                                    (io_error.empty() ? "" : ": " + io_error);
            lk.unlock();
            return fail(why);
        }
    }
    const double connect_s = std::chrono::duration<double>(Clock::now() - t_connect).count();
    std::this_thread::sleep_for(500ms);
    const long rss1 = procs_rss_kib(a.server_pids);

    HttpPublisher http_publisher;
    if (http_publish) {
        if (auto ec = http_publisher.connect(a.ports[0])) return fail("publisher: " + ec.message());
    } else {
        std::string error;
        pub_fd = wsgate::bench::ws_connect(a.ports[0], wsgate_mode ? "/ws" : "/pub", error);
        if (pub_fd < 0) return fail("publisher: " + error);
        if (!watch(a.n, pub_fd)) return fail(std::string("epoll_ctl: ") + std::strerror(errno));
    }

    // The server's allocations and system calls across the publish phase (one server only).
    const bool one_server = a.server_pids.size() == 1;
    std::optional<std::uint64_t> allocs0, allocs1, syscalls;
    if (one_server && !a.alloc_file.empty()) {
        if (handles_signal(a.server_pids[0], SIGUSR1)) allocs0 = server_allocations(a.server_pids[0], a.alloc_file);
        if (!allocs0) std::cerr << "the server gave no allocation count (SIGUSR1, --alloc-file)\n";
    }
    SyscallCounter syscall_counter;
    const bool counting_syscalls = one_server && a.syscalls && syscall_counter.start(a.server_pids[0]);

    const double srv_cpu0 = procs_cpu_seconds(a.server_pids);
    const double redis_cpu0 = a.redis_pid ? proc_cpu_seconds(a.redis_pid) : 0;
    const double gen_cpu0 = self_cpu_seconds();
    const long long t0 = now_ns();
    std::vector<std::uint32_t> request_us;
    std::string publish_error;
    std::thread http_thread;
    if (http_publish) {
        // Blocking POSTs on their own thread, so the I/O thread only counts deliveries.
        request_us.reserve(a.m);
        http_thread = std::thread([&] {
            for (std::size_t k = 0; k < a.m; ++k) {
                {
                    std::unique_lock plk(pmu);
                    pcv.wait(plk, [&] { return permits > 0 || publish_stop; });
                    if (publish_stop) return;
                    --permits;
                }
                std::string body = R"({"topic":")" + a.topic + R"(","type":"bench","data":)" + event_data(k) + "}";
                const long long t = now_ns();
                std::string error;
                const int status = http_publisher.post("/publish", std::move(body), a.admin_key, error);
                request_us.push_back(static_cast<std::uint32_t>((now_ns() - t) / 1000));
                if (status != 200) {
                    std::lock_guard lk(mu);
                    publish_error = "POST /publish: " + std::to_string(status) + " " + error;
                    cv.notify_all();
                    return;
                }
            }
        });
    } else {
        for (std::size_t i = 0; i < std::min(a.window, a.m); ++i) publish(next_event.fetch_add(1));
    }
    bool stalled = false;
    {
        std::unique_lock lk(mu);
        std::size_t seen = 0;
        while (completed < a.m && publish_error.empty() && io_error.empty()) {
            cv.wait_for(lk, 5s, [&] { return completed != seen || !publish_error.empty() || !io_error.empty(); });
            if (completed == seen && publish_error.empty() && io_error.empty()) {
                stalled = true;  // frames were lost (backpressure) or the server died
                break;
            }
            seen = completed;
        }
    }
    const long long t1 = stalled ? last_rx_ns.load() : now_ns();
    const double wall = static_cast<double>(t1 - t0) / 1e9;
    const double srv_cpu = procs_cpu_seconds(a.server_pids) - srv_cpu0;
    const double redis_cpu = a.redis_pid ? proc_cpu_seconds(a.redis_pid) - redis_cpu0 : 0;
    const double gen_cpu = self_cpu_seconds() - gen_cpu0;
    if (counting_syscalls) syscalls = syscall_counter.stop();
    if (allocs0) allocs1 = server_allocations(a.server_pids[0], a.alloc_file);
    if (http_thread.joinable()) {
        {
            std::lock_guard plk(pmu);
            publish_stop = true;
        }
        pcv.notify_all();
        http_thread.join();
    }
    stop_io();
    if (!publish_error.empty() || !io_error.empty()) {
        std::cerr << (publish_error.empty() ? io_error : publish_error) << "\n";
        return 1;
    }

    std::size_t deliveries = 0;
    for (auto& r : received) deliveries += r.load();
    std::vector<std::uint32_t>& local = lat_local;
    std::vector<std::uint32_t>& remote = lat_remote;
    std::vector<std::uint32_t>& last = last_member_us;
    std::vector<std::uint32_t> lat = local;
    lat.insert(lat.end(), remote.begin(), remote.end());
    const double p50 = pct_ms(lat, 0.50), p99 = pct_ms(lat, 0.99);
    const double gen_pct = wall > 0 ? 100.0 * gen_cpu / wall : 0;
    const double rss_per_conn = a.n ? static_cast<double>(rss1 - rss0) / static_cast<double>(a.n) : 0;
    const char* gen_note = gen_pct >= 90 ? " (lower bound)" : "";
    const char* stall_note = stalled ? " STALLED: lost frames, figures cover what arrived" : "";
    const std::string label = a.label.empty() ? a.mode : a.label;

    if (a.row == "scaleout") {
        // The 1-minute load average at the end: the machine may be shared.
        std::string load = "?";
        std::ifstream("/proc/loadavg") >> load;
        // | case | N | nodes | events | deliveries/s | p50 | p99 | local p99 | cross-node p99 |
        //   last member p50 | p99 | POST p50 | nodes' CPU s | Redis CPU ms: total / per 1k deliveries | generator CPU | connect s | load |
        char cross[32] = "—";
        if (nodes > 1) std::snprintf(cross, sizeof cross, "%.2f", pct_ms(remote, 0.99));
        char redis[32] = "—";
        if (a.redis_pid && deliveries)
            std::snprintf(redis, sizeof redis, "%.0f / %.3f", 1000.0 * redis_cpu,
                          1000.0 * redis_cpu / (static_cast<double>(deliveries) / 1000.0));
        char post[32] = "—";
        if (http_publish) std::snprintf(post, sizeof post, "%.2f", pct_ms(request_us, 0.50));
        std::printf("| %s | %zu | %zu | %zu | %.0f | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %s | %.2f | %s | %.0f%%%s | %.1f | %s |%s\n",
                    label.c_str(), a.n, nodes, a.m, static_cast<double>(deliveries) / wall, p50, p99,
                    pct_ms(local, 0.99), cross, pct_ms(last, 0.50), pct_ms(last, 0.99), post, srv_cpu, redis, gen_pct,
                    gen_note, connect_s, load.c_str(), stall_note);
    } else {
        // | server | N | events | deliveries/s | p50 | p99 | server CPU s | RSS KiB/conn | CPU ms/1k |
        //   allocs/delivery | syscalls/delivery | generator CPU | connect s |
        const double per = deliveries ? 1.0 / static_cast<double>(deliveries) : 0;
        char allocs[32] = "-";
        if (allocs0 && allocs1 && deliveries)
            std::snprintf(allocs, sizeof allocs, "%.2f", static_cast<double>(*allocs1 - *allocs0) * per);
        char sys[32] = "-";
        if (syscalls && deliveries) std::snprintf(sys, sizeof sys, "%.3f", static_cast<double>(*syscalls) * per);
        std::printf("| %s | %zu | %zu | %.0f | %.2f | %.2f | %.2f | %.1f | %.2f | %s | %s | %.0f%%%s | %.1f |%s\n",
                    label.c_str(), a.n, a.m, static_cast<double>(deliveries) / wall, p50, p99, srv_cpu, rss_per_conn,
                    1e6 * srv_cpu * per, allocs, sys, gen_pct, gen_note, connect_s, stall_note);
    }
    std::fflush(stdout);
    // A close frame (1000) on every socket, then the sockets go.
    const std::string close_frame = wsgate::bench::masked_frame(8, std::string_view("\x03\xe8", 2));
    for (auto& sub : subs) {
        if (sub.fd < 0) continue;
        ::send(sub.fd, close_frame.data(), close_frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(sub.fd);
    }
    ::close(ep);
    return stalled ? 2 : 0;
}
