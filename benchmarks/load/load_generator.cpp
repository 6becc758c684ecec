// Loopback load generator: N subscriber connections, one publisher, M events with a send
// timestamp in each; at most W events in flight (an event completes when all N received it).
// Reports deliveries/s, latency percentiles, server CPU seconds and RSS per connection (from
// /proc/<server-pid>), and the generator's own CPU use.
//
//   bench_load_generator --mode wsgate|bare --port P --server-pid PID -n 1000 -m 200 [-w 8] [--size 64]
#include <wsgate/beast/client.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    std::string mode = "wsgate";
    unsigned port = 0;
    long server_pid = 0;
    std::size_t n = 1000;
    std::size_t m = 200;
    std::size_t window = 8;
    std::size_t size = 64;
    std::size_t connect_parallel = 200;
    std::string label;
};

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

long proc_rss_kib(long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

double self_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Reads the integer after `"key":` without a JSON parse (the generator must stay cheap).
bool find_int(std::string_view s, std::string_view key, long long& out) {
    auto p = s.find(key);
    if (p == std::string_view::npos) return false;
    const char* b = s.data() + p + key.size();
    return std::from_chars(b, s.data() + s.size(), out).ec == std::errc{};
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--mode") a.mode = v;
        else if (k == "--port") a.port = std::stoul(v);
        else if (k == "--server-pid") a.server_pid = std::stol(v);
        else if (k == "-n") a.n = std::stoul(v);
        else if (k == "-m") a.m = std::stoul(v);
        else if (k == "-w") a.window = std::stoul(v);
        else if (k == "--size") a.size = std::stoul(v);
        else if (k == "--label") a.label = v;
    }
    const bool wsgate_mode = a.mode == "wsgate";
    const std::string base = "ws://127.0.0.1:" + std::to_string(a.port);
    const std::string sub_url = base + (wsgate_mode ? "/ws" : "/sub");
    const std::string pub_url = base + (wsgate_mode ? "/ws" : "/pub");

    wsgate::beast::ClientContext ctx(1);
    const long rss0 = a.server_pid ? proc_rss_kib(a.server_pid) : 0;

    // State shared with the I/O thread.
    std::vector<std::atomic<std::uint32_t>> received(a.m);
    std::vector<std::uint32_t> latencies_us;
    latencies_us.reserve(a.n * a.m);
    std::mutex mu;
    std::condition_variable cv;
    std::size_t connected = 0, subscribed = 0, failed = 0, completed = 0;
    std::atomic<std::size_t> next_event{0};
    std::atomic<long long> last_rx_ns{0};
    wsgate::beast::Client* publisher_ptr = nullptr;
    std::string pad(a.size > 40 ? a.size - 40 : 1, 'x');

    auto make_event = [&](std::size_t seq) {
        std::string ev = "{\"seq\":" + std::to_string(seq) + ",\"t\":" + std::to_string(now_ns()) + ",\"p\":\"" + pad + "\"}";
        if (wsgate_mode) return "{\"type\":\"publish\",\"topic\":\"bench\",\"data\":" + ev + "}";
        return ev;
    };

    std::vector<std::unique_ptr<wsgate::beast::Client>> subs;
    subs.reserve(a.n);
    for (std::size_t i = 0; i < a.n; ++i) {
        auto c = std::make_unique<wsgate::beast::Client>(ctx);
        c->on_message([&](std::string_view text) {
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
            latencies_us.push_back(static_cast<std::uint32_t>(std::max(0LL, (rx - t) / 1000)));  // one I/O thread
            if (seq < 0 || static_cast<std::size_t>(seq) >= a.m) return;
            if (received[static_cast<std::size_t>(seq)].fetch_add(1) + 1 == a.n) {
                std::size_t k = next_event.fetch_add(1);
                if (k < a.m) publisher_ptr->send(make_event(k));
                std::lock_guard lk(mu);
                ++completed;
                cv.notify_all();
            }
        });
        subs.push_back(std::move(c));
    }

    // Connect with bounded parallelism.
    auto t_connect = Clock::now();
    std::size_t started = 0;
    while (true) {
        std::unique_lock lk(mu);
        if (connected + failed == a.n) break;
        while (started < a.n && started - connected - failed < a.connect_parallel) {
            auto* c = subs[started++].get();
            lk.unlock();
            c->async_connect(sub_url, [&, c](std::error_code ec) {
                if (!ec && wsgate_mode) c->send(R"({"type":"subscribe","topic":"bench"})");
                std::lock_guard lk2(mu);
                (ec ? failed : connected)++;
                if (!ec && !wsgate_mode) ++subscribed;
                cv.notify_all();
            }, 30s);
            lk.lock();
        }
        if (!cv.wait_for(lk, 60s, [&] { return connected + failed == a.n || started - connected - failed < a.connect_parallel; })) break;
    }
    {
        std::unique_lock lk(mu);
        cv.wait_for(lk, 60s, [&] { return subscribed + failed >= a.n; });
        if (failed || subscribed < a.n) {
            std::cerr << "connected " << connected << ", subscribed " << subscribed << ", failed " << failed << "\n";
            return 1;
        }
    }
    const double connect_s = std::chrono::duration<double>(Clock::now() - t_connect).count();
    std::this_thread::sleep_for(500ms);
    const long rss1 = a.server_pid ? proc_rss_kib(a.server_pid) : 0;

    wsgate::beast::Client publisher(ctx);
    if (auto ec = publisher.connect(pub_url)) {
        std::cerr << "publisher: " << ec.message() << "\n";
        return 1;
    }
    publisher_ptr = &publisher;

    const double srv_cpu0 = a.server_pid ? proc_cpu_seconds(a.server_pid) : 0;
    const double gen_cpu0 = self_cpu_seconds();
    const long long t0 = now_ns();
    for (std::size_t i = 0; i < std::min(a.window, a.m); ++i) publisher.send(make_event(next_event.fetch_add(1)));
    bool stalled = false;
    {
        std::unique_lock lk(mu);
        std::size_t seen = 0;
        while (completed < a.m) {
            cv.wait_for(lk, 5s, [&] { return completed != seen; });
            if (completed == seen) {
                stalled = true;  // frames were lost (backpressure) or the server died
                break;
            }
            seen = completed;
        }
    }
    const long long t1 = stalled ? last_rx_ns.load() : now_ns();
    const double wall = static_cast<double>(t1 - t0) / 1e9;
    const double srv_cpu = a.server_pid ? proc_cpu_seconds(a.server_pid) - srv_cpu0 : 0;
    const double gen_cpu = self_cpu_seconds() - gen_cpu0;

    std::size_t deliveries = 0;
    for (auto& r : received) deliveries += r.load();
    std::vector<std::uint32_t> lat;
    {
        std::lock_guard lk(mu);
        lat = latencies_us;
    }
    auto pct = [&](double p) -> double {
        if (lat.empty()) return 0;
        auto k = static_cast<std::size_t>(p * static_cast<double>(lat.size() - 1));
        std::nth_element(lat.begin(), lat.begin() + static_cast<long>(k), lat.end());
        return lat[k] / 1000.0;
    };
    const double p50 = pct(0.50), p99 = pct(0.99);
    const double gen_pct = wall > 0 ? 100.0 * gen_cpu / wall : 0;
    const double rss_per_conn = a.n ? static_cast<double>(rss1 - rss0) / static_cast<double>(a.n) : 0;

    std::printf("| %s | %zu | %zu | %.0f | %.2f | %.2f | %.2f | %.1f | %.0f%%%s | %.1f |%s\n",
                a.label.empty() ? a.mode.c_str() : a.label.c_str(), a.n, a.m,
                static_cast<double>(deliveries) / wall, p50, p99, srv_cpu, rss_per_conn, gen_pct,
                gen_pct >= 90 ? " (lower bound)" : "", connect_s,
                stalled ? " STALLED: lost frames, figures cover what arrived" : "");
    std::fflush(stdout);
    publisher.close();
    return stalled ? 2 : 0;
}
