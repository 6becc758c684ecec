// permessage-deflate on the wsgate::beast server: CPU and bytes per delivery of ~1 KiB JSON events
// (seed 002 METRICS_UPDATE batches in wsgate envelopes), deflate off vs on in the same run, and
// the heap each deflate connection holds. See docs/benchmarks-beast.md.
//
// A delivery is one server-role Beast WebSocket write, with the options the server sets
// (beast_deflate_options), into an in-memory next layer that counts the bytes: no socket, so the
// figures are the framing and compression cost alone. The first messages of every configuration
// are inflated again and compared before timing, so a figure always belongs to correct output.
#include "websocket_session.hpp"

#include <wsgate/envelope.hpp>

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/zlib/deflate_stream.hpp>
#include <boost/beast/zlib/inflate_stream.hpp>

#include <nlohmann/json.hpp>

#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

// Live heap bytes while `g_counting` is set (malloc_usable_size of each block), to measure what a
// connection holds.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long long> g_live{0};
}  // namespace

void* operator new(std::size_t n) {
    void* p = std::malloc(n == 0 ? 1 : n);
    if (p == nullptr) throw std::bad_alloc{};
    if (g_counting.load(std::memory_order_relaxed))
        g_live.fetch_add(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
    return p;
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept {
    if (p != nullptr && g_counting.load(std::memory_order_relaxed))
        g_live.fetch_sub(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
    std::free(p);
}
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { operator delete(p); }

namespace {

namespace net = boost::asio;
namespace bb = boost::beast;
namespace websocket = bb::websocket;
using wsgate::beast::DeflateSettings;

// A synchronous next layer: reads come from `input`, writes are counted (and kept if `keep`).
class MemoryStream {
public:
    using executor_type = net::io_context::executor_type;
    explicit MemoryStream(net::io_context& ioc) : ex_(ioc.get_executor()) {}
    executor_type get_executor() noexcept { return ex_; }

    template <class Buffers>
    std::size_t read_some(const Buffers& b, bb::error_code& ec) {
        if (pos >= input.size()) {
            ec = net::error::eof;
            return 0;
        }
        ec = {};
        const auto n = net::buffer_copy(b, net::buffer(input.data() + pos, input.size() - pos));
        pos += n;
        return n;
    }
    template <class Buffers>
    std::size_t read_some(const Buffers& b) {
        bb::error_code ec;
        const auto n = read_some(b, ec);
        if (ec) throw boost::system::system_error(ec);
        return n;
    }
    template <class Buffers>
    std::size_t write_some(const Buffers& b, bb::error_code& ec) {
        ec = {};
        std::size_t n = 0;
        for (auto it = net::buffer_sequence_begin(b); it != net::buffer_sequence_end(b); ++it) {
            net::const_buffer c = *it;
            if (keep) output.append(static_cast<const char*>(c.data()), c.size());
            n += c.size();
        }
        written += n;
        return n;
    }
    template <class Buffers>
    std::size_t write_some(const Buffers& b) {
        bb::error_code ec;
        return write_some(b, ec);
    }

    std::string input;
    std::size_t pos = 0;
    std::string output;
    bool keep = true;
    std::size_t written = 0;

private:
    executor_type ex_;
};

void teardown(bb::role_type, MemoryStream&, bb::error_code& ec) { ec = {}; }

using ServerStream = websocket::stream<MemoryStream>;

// A browser's upgrade request (Chrome offers exactly this extension).
const std::string kUpgrade =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

// 256 distinct ~1 KiB events: seed 002 METRICS_UPDATE batches of 6 change records as wsgate
// serializes them (type, timestamp, id, topic, updates), with varying ids, values and times.
const std::vector<std::string>& events() {
    static const std::vector<std::string> all = [] {
        std::mt19937 rng{42};
        std::uniform_int_distribution<int> entity(0, 49);
        std::uniform_int_distribution<int> value(0, 99'999);
        const char* kinds[] = {"INSERT", "MODIFY", "MODIFY", "MODIFY", "REMOVE"};
        const char* types[] = {"stream", "queue", "pipeline", "consumer"};
        std::vector<std::string> out;
        auto t0 = wsgate::TimePoint{} + std::chrono::milliseconds(1'699'123'456'789);
        for (int e = 0; e < 256; ++e) {
            auto updates = nlohmann::json::array();
            for (int i = 0; i < 6; ++i) {
                const int id = entity(rng);
                updates.push_back({{"eventType", kinds[static_cast<std::size_t>(value(rng)) % 5]},
                                   {"timestamp", 1'699'123'456'789LL + e * 1000 + i},
                                   {"data",
                                    {{"entity_id", "stream-" + std::to_string(id)},
                                     {"entity_type", types[static_cast<std::size_t>(id) % 4]},
                                     {"metric_value", value(rng)},
                                     {"metric_name", "throughput_per_second"},
                                     {"timestamp", "2024-11-04T12:34:" + std::to_string(10 + e % 50) + "Z"}}}});
            }
            wsgate::Envelope env{"METRICS_UPDATE"};
            env.topic("metrics").field("updates", std::move(updates));
            out.push_back(*env.serialize(t0 + std::chrono::milliseconds(e * 1000)));
        }
        return out;
    }();
    return all;
}

double average_event_bytes() {
    double sum = 0;
    for (const auto& e : events()) sum += static_cast<double>(e.size());
    return sum / static_cast<double>(events().size());
}

// A server stream that has answered kUpgrade (with or without permessage-deflate).
std::unique_ptr<ServerStream> accepted(net::io_context& ioc, const DeflateSettings& d) {
    auto ws = std::make_unique<ServerStream>(ioc);
    if (d.enabled) ws->set_option(wsgate::beast::beast_deflate_options(d));
    ws->next_layer().input = kUpgrade;
    ws->accept();
    ws->text(true);
    ws->next_layer().output.clear();
    ws->next_layer().written = 0;
    return ws;
}

// The data messages in `wire` (unmasked server frames), inflated where RSV1 is set.
std::vector<std::string> decode(const std::string& wire, int window_bits) {
    std::vector<std::string> out;
    bb::zlib::inflate_stream zi;
    zi.reset(window_bits);
    std::size_t i = 0;
    std::string message;
    bool compressed = false;
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(wire[k]); };
    while (i + 2 <= wire.size()) {
        const unsigned b0 = at(i);
        std::uint64_t len = at(i + 1) & 0x7F;
        std::size_t h = 2;
        if (len == 126) {
            len = (std::uint64_t{at(i + 2)} << 8) | at(i + 3);
            h = 4;
        } else if (len == 127) {
            len = 0;
            for (std::size_t k = 0; k < 8; ++k) len = (len << 8) | at(i + 2 + k);
            h = 10;
        }
        if ((b0 & 0x0F) != 0) compressed = (b0 & 0x40) != 0;  // first frame of a message
        message.append(wire, i + h, len);
        i += h + len;
        if ((b0 & 0x80) == 0) continue;
        if (compressed) {
            message.append("\x00\x00\xff\xff", 4);
            std::string plain(1 << 20, '\0');
            bb::zlib::z_params zs;
            zs.next_in = message.data();
            zs.avail_in = message.size();
            zs.next_out = plain.data();
            zs.avail_out = plain.size();
            bb::error_code ec;
            zi.write(zs, bb::zlib::Flush::sync, ec);
            plain.resize(ec ? 0 : zs.total_out);
            message = std::move(plain);
        }
        out.push_back(std::move(message));
        message.clear();
    }
    return out;
}

// A client frame as a browser would send it: compressed (raw DEFLATE, sync flush, the 00 00 ff ff
// tail removed), RSV1 set, masked with a zero key.
std::string client_frame(const std::string& text) {
    bb::zlib::deflate_stream zo;
    zo.reset(6, 15, 8, bb::zlib::Strategy::normal);
    std::string out(text.size() + 64, '\0');
    bb::zlib::z_params zs;
    zs.next_in = text.data();
    zs.avail_in = text.size();
    zs.next_out = out.data();
    zs.avail_out = out.size();
    bb::error_code ec;
    zo.write(zs, bb::zlib::Flush::sync, ec);
    out.resize(zs.total_out - 4);
    std::string frame;
    frame += static_cast<char>(0x80 | 0x40 | 0x1);
    if (out.size() < 126) {  // RFC 6455 §5.2: the shortest length encoding
        frame += static_cast<char>(0x80 | out.size());
    } else {
        frame += static_cast<char>(0x80 | 126);
        frame += static_cast<char>((out.size() >> 8) & 0xFF);
        frame += static_cast<char>(out.size() & 0xFF);
    }
    frame.append(4, '\0');
    return frame + out;
}

struct Config {
    const char* name;
    DeflateSettings d;
};

std::vector<Config> configs() {
    DeflateSettings on;
    on.enabled = true;
    auto no_takeover = on;
    no_takeover.server_no_context_takeover = true;
    auto lean = on;
    lean.server_max_window_bits = 10;
    lean.memory_level = 1;
    auto fast = on;
    fast.level = 1;
    auto beast_default = on;  // Beast's own defaults: level 8
    beast_default.level = 8;
    return {{"off", DeflateSettings{}},
            {"on_default", on},
            {"on_no_context_takeover", no_takeover},
            {"on_window10_mem1", lean},
            {"on_level1", fast},
            {"on_level8", beast_default}};
}

// CPU and bytes per delivery: one 1 KiB event per iteration through one connection's stream.
void BM_delivery(benchmark::State& state) {
    const auto cfg = configs()[static_cast<std::size_t>(state.range(0))];
    state.SetLabel(cfg.name);
    net::io_context ioc;
    const auto& evs = events();
    {
        // Correctness first: what this configuration writes inflates back to the events.
        auto ws = accepted(ioc, cfg.d);
        for (std::size_t i = 0; i < 16; ++i) ws->write(net::buffer(evs[i]));
        auto decoded = decode(ws->next_layer().output, cfg.d.server_max_window_bits);
        for (std::size_t i = 0; i < 16; ++i) {
            if (i >= decoded.size() || decoded[i] != evs[i]) {
                state.SkipWithError("written frames do not decode to the events");
                return;
            }
        }
    }
    auto ws = accepted(ioc, cfg.d);
    ws->next_layer().keep = false;
    std::size_t i = 0;
    for (auto _ : state) {
        ws->write(net::buffer(evs[i]));
        i = (i + 1) % evs.size();
    }
    const auto n = static_cast<double>(state.iterations());
    const double wire = static_cast<double>(ws->next_layer().written) / n;
    state.counters["json_B"] = average_event_bytes();
    state.counters["wire_B"] = wire;
    state.counters["wire_ratio"] = wire / average_event_bytes();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(average_event_bytes()));
}
BENCHMARK(BM_delivery)->DenseRange(0, 5);

// Heap per connection: handshake, then one event sent, then one compressed client message read.
// Measured over 200 connections (allocator noise averages out); not timed.
void BM_connection_heap(benchmark::State& state) {
    const auto cfg = configs()[static_cast<std::size_t>(state.range(0))];
    state.SetLabel(cfg.name);
    constexpr int kConns = 200;
    const std::string client_msg = client_frame(R"({"type":"subscribe","topic":"metrics"})" + std::string(300, ' '));
    double after_handshake = 0;
    double after_write = 0;
    double after_read = 0;
    for (auto _ : state) {
        net::io_context ioc;
        std::vector<std::unique_ptr<ServerStream>> conns;
        conns.reserve(kConns);
        g_live = 0;
        g_counting = true;
        for (int c = 0; c < kConns; ++c) conns.push_back(accepted(ioc, cfg.d));
        after_handshake = static_cast<double>(g_live.load()) / kConns;
        for (auto& ws : conns) {
            ws->next_layer().keep = false;
            ws->write(net::buffer(events()[0]));
        }
        after_write = static_cast<double>(g_live.load()) / kConns;
        for (auto& ws : conns) {
            // Compressed client messages only make sense on a deflate connection.
            ws->next_layer().input = cfg.d.enabled ? client_msg : std::string{"\x81\x80\0\0\0\0", 6};
            ws->next_layer().pos = 0;
            bb::flat_buffer b;
            bb::error_code ec;
            ws->read(b, ec);
            if (ec) {
                g_counting = false;
                state.SkipWithError("the server stream could not read the client message");
                return;
            }
        }
        after_read = static_cast<double>(g_live.load()) / kConns;
        g_counting = false;
    }
    state.counters["heap_B_handshake"] = after_handshake;
    state.counters["heap_B_after_send"] = after_write;
    state.counters["heap_B_after_recv"] = after_read;
}
BENCHMARK(BM_connection_heap)->DenseRange(0, 5)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
