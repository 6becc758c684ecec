// realtime_server's command line. See flags.hpp.
#include "flags.hpp"

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <set>

namespace demo {

std::string Options::get(const std::string& flag, const char* env, std::string def) const {
    if (auto it = values.find(flag); it != values.end()) return it->second;
    if (env != nullptr) {
        if (const char* v = std::getenv(env); v != nullptr && *v != '\0') return v;
    }
    return def;
}

namespace {

const char* const kUsage = R"(usage: realtime_server [options]
  --address ADDR            listen address (env WSGATE_ADDRESS, default 127.0.0.1)
  --port N                  listen port, 0 = any (env WSGATE_PORT, default 8080)
  --port-file PATH          write the bound port to PATH once listening
  --web-root DIR            static files for the page (env WSGATE_WEB_ROOT)
  --admin-key KEY           key for POST /publish (env WSGATE_ADMIN_KEY)
  --session-secret S        user session token secret, at least 32 bytes (env WSGATE_SESSION_SECRET)
  --public-secret S         public device token secret, at least 32 bytes (env WSGATE_PUBLIC_TOKEN_SECRET)
  --allow-anonymous         let clients without a token connect: they read the leaderboard:* and
                            events:* topics, publish nothing, at most 8 per source IP
  --threads N               io threads (env WSGATE_THREADS, default 1)
  --max-message-bytes N     larger client frames are closed with 1009 (default 65536)
  --rate R --burst B        per-connection message rate limit (default 20/s, burst 40)
  --heartbeat-timeout-ms N  no frame (not even a pong) for this long ends a peer; pings at half (default 60000)
  --max-connections N       open WebSockets on this node, then 503; 0 = unlimited (default 10000)
  --max-connections-per-address N
                            open WebSockets per client address, then 503; 0 = unlimited (default 64)
  --queue N                 frames queued per connection (default 1024)
  --backpressure drop|close what a full queue does (default drop)
  --deflate                 compress messages of 256 bytes and more with permessage-deflate for
                            clients that offer it (default off: ~170 KiB per compressing connection)
  --store SPEC              memory | sqlite:PATH | redis://HOST:PORT | dynamodb://TABLE[?endpoint=URL&region=R&create=1]
                            (env WSGATE_STORE, default memory)
  --bus SPEC                none | redis://HOST:PORT: carry publishes to other nodes (env WSGATE_BUS)
  --node-id ID              this node's id in the store (env WSGATE_NODE_ID; default: the id kept in
                            the SQLite file, else random). A fixed id lets a restarted node remove
                            what it left behind at once; without one a Redis node's leftovers are
                            reaped when its lease runs out
  --node-lease-ms N         this node's lease in the store: the records of a node that stopped
                            renewing are reaped within N ms + 1 s (default 30000, 0 = off)
)";

std::size_t to_size(const std::string& s, std::size_t def) {
    try {
        return s.empty() ? def : static_cast<std::size_t>(std::stoull(s));
    } catch (const std::exception&) {
        std::cerr << "not a number: " << s << "\n";
        std::exit(2);
    }
}

double to_double(const std::string& s, double def) {
    try {
        return s.empty() ? def : std::stod(s);
    } catch (const std::exception&) {
        std::cerr << "not a number: " << s << "\n";
        std::exit(2);
    }
}

}  // namespace

// Every flag takes a value except --allow-anonymous and --deflate. A value is the next argument or follows
// '=': write --admin-key=VALUE when VALUE itself starts with "--", which is otherwise taken
// for a forgotten value rather than silently swallowing the next flag.
Options parse(int argc, char** argv) {
    static const std::set<std::string> kValued{"address", "port", "port-file", "web-root", "admin-key",
                                               "session-secret", "public-secret", "threads", "max-message-bytes",
                                               "rate", "burst", "heartbeat-timeout-ms", "queue", "backpressure",
                                               "store", "bus", "node-id", "node-lease-ms", "max-connections",
                                               "max-connections-per-address"};
    static const std::set<std::string> kSwitches{"allow-anonymous", "deflate"};
    auto fail = [](const std::string& why) {
        std::cerr << "realtime_server: " << why << "\n" << kUsage;
        std::exit(2);
    };
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            std::exit(0);
        }
        if (a.rfind("--", 0) != 0) fail("unexpected argument: " + a);
        a = a.substr(2);
        std::string name = a;
        std::optional<std::string> value;
        if (auto eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
        }
        if (kSwitches.count(name) != 0) {
            if (value) fail("--" + name + " takes no value");
            o.values[name] = "1";
        } else if (kValued.count(name) != 0) {
            if (!value) {
                if (i + 1 >= argc) fail("missing value for --" + name);
                std::string next = argv[i + 1];
                if (next.rfind("--", 0) == 0)
                    fail("missing value for --" + name + " (for a value starting with \"--\", write --" + name +
                         "=VALUE)");
                value = next;
                ++i;
            }
            o.values[name] = *value;
        } else {
            fail("unknown option: --" + name);
        }
    }
    return o;
}

wsgate::beast::AppSettings app_settings(const Options& o, const std::string& default_web_root) {
    wsgate::beast::AppSettings app;
    auto& ss = app.server;
    ss.address = o.get("address", "WSGATE_ADDRESS", "127.0.0.1");
    ss.port = static_cast<unsigned short>(to_size(o.get("port", "WSGATE_PORT", "8080"), 8080));
    ss.threads = to_size(o.get("threads", "WSGATE_THREADS", "1"), 1);
    ss.max_message_bytes = to_size(o.get("max-message-bytes", nullptr), 64 * 1024);
    ss.heartbeat_timeout = std::chrono::milliseconds(to_size(o.get("heartbeat-timeout-ms", nullptr), 60'000));
    ss.max_connections = to_size(o.get("max-connections", nullptr), ss.max_connections);
    ss.max_connections_per_address = to_size(o.get("max-connections-per-address", nullptr), ss.max_connections_per_address);
    ss.queue_capacity = to_size(o.get("queue", nullptr), 1024);
    ss.backpressure = o.get("backpressure", nullptr, "drop") == "close" ? wsgate::beast::BackpressurePolicy::close
                                                                       : wsgate::beast::BackpressurePolicy::drop_newest;
    ss.static_root = o.get("web-root", "WSGATE_WEB_ROOT", default_web_root);
    ss.deflate.enabled = o.get("deflate", nullptr) == "1";

    auto& gs = app.gateway;
    gs.max_message_bytes = ss.max_message_bytes;
    gs.rate_per_second = to_double(o.get("rate", nullptr), 20.0);
    gs.rate_burst = to_double(o.get("burst", nullptr), 40.0);
    // Status boards (public tokens, and anonymous readers when allowed) read leaderboards and
    // events; users holding "publish" may publish events; every other topic is closed.
    // Both keep a history (1,000 publications, 10 minutes), so a board that reconnects receives
    // what it missed; event topics also keep device cursors and presence (docs/delivery.md).
    wsgate::TopicRule leaderboards{"leaderboard:*", "read_leaderboard", "", /*anonymous_read=*/true};
    leaderboards.history_size = 1000;
    leaderboards.history_ttl = std::chrono::minutes{10};
    wsgate::TopicRule events{"events:*", "read_events", "publish", /*anonymous_read=*/true};
    events.history_size = 1000;
    events.history_ttl = std::chrono::minutes{10};
    events.device_cursors = true;
    events.presence = true;
    events.presence_events = true;
    gs.router.topic_rules = {leaderboards, events};
    gs.node_id = o.get("node-id", "WSGATE_NODE_ID");
    gs.node_lease = std::chrono::milliseconds(to_size(o.get("node-lease-ms", nullptr), 30'000));
    // The sweep (TTL, idle time, maximum age, node lease) runs every second; SIGINT/SIGTERM close
    // every connection with 1001.
    app.sweep_interval = std::chrono::seconds(1);
    app.handle_signals = true;
    return app;
}

void print_banner(std::ostream& out, const wsgate::beast::ServerSettings& ss, unsigned short port,
                  const std::string& store_line, const std::string& auth_line,
                  const std::vector<std::string>& generated, const std::string& dev_admin_key) {
    const std::string host = ss.address.find(':') != std::string::npos ? "[" + ss.address + "]" : ss.address;
    const std::string base = "http://" + host + ":" + std::to_string(port);
    out << "wsgate realtime_server listening on " << base << " (WebSocket at ws://" << host << ":" << port
        << ss.ws_path << ")\n"
        << "  store: " << store_line << "\n"
        << "  auth: " << auth_line << "\n";
    for (const auto& g : generated) out << "  generated a development " << g << "\n";
    if (!generated.empty() && !dev_admin_key.empty()) out << "  development admin key: " << dev_admin_key << "\n";
    if (ss.static_root.empty()) out << "  no --web-root: the status board page is not served\n";
    else out << "\nOpen the status board:  " << base << "/\n";
    out << "\nFrom a terminal:\n"
        << "  TOKEN=$(curl -s -X POST " << base << "/public/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])')\n"
        << "  python3 -m websockets \"ws://" << host << ":" << port << ss.ws_path << "?token=$TOKEN\"\n"
        << "  > {\"type\":\"subscribe\",\"topic\":\"events:demo\"}\n"
        << "Publish (another terminal):\n"
        << "  curl -s -X POST " << base << "/publish -H 'X-Admin-Key: <admin key>' \\\n"
        << "    -d '{\"topic\":\"events:demo\",\"type\":\"activity_event\",\"data\":{\"text\":\"hello\"}}'\n"
        << "Metrics: curl -s " << base << "/metrics\n"
        << std::endl;
}

}  // namespace demo
