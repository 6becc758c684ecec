// realtime_server: the wsgate demo. A WebSocket endpoint, public token issuance, server-side
// publish for workflow steps and game actions, Prometheus metrics and the status board page.
//
//   realtime_server [--address 127.0.0.1] [--port 8080] [--admin-key KEY] ...   (--help)
#include "demo_auth.hpp"

#include <wsgate/beast/server.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/random.hpp>
#include <wsgate/memory_store.hpp>
#ifdef WSGATE_DEMO_HAVE_STORES
#include <wsgate/stores/factory.hpp>
#endif

#include <openssl/crypto.h>

#include <csignal>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#ifndef WSGATE_DEMO_WEB_ROOT
#define WSGATE_DEMO_WEB_ROOT ""
#endif

namespace {

struct Options {
    std::map<std::string, std::string> values;
    bool has(const std::string& k) const { return values.count(k) != 0; }
    // Flag first, then environment variable, then the default.
    std::string get(const std::string& flag, const char* env, std::string def = {}) const {
        if (auto it = values.find(flag); it != values.end()) return it->second;
        if (env != nullptr) {
            if (const char* v = std::getenv(env); v != nullptr && *v != '\0') return v;
        }
        return def;
    }
};

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
  --store SPEC              memory | sqlite:PATH | redis://HOST:PORT (env WSGATE_STORE, default memory)
  --bus SPEC                none | redis://HOST:PORT: carry publishes to other nodes (env WSGATE_BUS)
  --node-id ID              this node's id in the store (env WSGATE_NODE_ID; default: the id kept in
                            the SQLite file, else random). A fixed id lets a restarted node remove
                            what it left behind at once; without one a Redis node's leftovers are
                            reaped when its lease runs out
  --node-lease-ms N         this node's lease in the store: the records of a node that stopped
                            renewing are reaped within N ms + 1 s (default 30000, 0 = off)
)";

// Every flag takes a value except --allow-anonymous. A value is the next argument or follows
// '=': write --admin-key=VALUE when VALUE itself starts with "--", which is otherwise taken
// for a forgotten value rather than silently swallowing the next flag.
Options parse(int argc, char** argv) {
    static const std::set<std::string> kValued{"address", "port", "port-file", "web-root", "admin-key",
                                               "session-secret", "public-secret", "threads", "max-message-bytes",
                                               "rate", "burst", "heartbeat-timeout-ms", "queue", "backpressure",
                                               "store", "bus", "node-id", "node-lease-ms", "max-connections",
                                               "max-connections-per-address"};
    static const std::set<std::string> kSwitches{"allow-anonymous"};
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

// The last events published through POST /publish, for pages polling while disconnected.
class RecentEvents {
public:
    void add(nlohmann::json e) {
        std::lock_guard lk(mu_);
        events_.push_back(std::move(e));
        if (events_.size() > 50) events_.pop_front();
    }
    nlohmann::json since(const std::string& topic) const {
        std::lock_guard lk(mu_);
        auto out = nlohmann::json::array();
        for (const auto& e : events_) {
            if (topic.empty() || e.value("topic", "") == topic) out.push_back(e);
        }
        return out;
    }

private:
    mutable std::mutex mu_;
    std::deque<nlohmann::json> events_;
};

bool admin_ok(const wsgate::beast::HttpRequest& req, const std::string& key) {
    std::string presented;
    if (auto* h = req.header("x-admin-key")) presented = *h;
    else if (auto* auth = req.header("authorization"); auth && auth->rfind("Bearer ", 0) == 0) presented = auth->substr(7);
    return presented.size() == key.size() && !key.empty() &&
           CRYPTO_memcmp(presented.data(), key.data(), key.size()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);

    // Secrets: flags or environment; otherwise development values that are said out loud.
    std::vector<std::string> generated;
    auto secret = [&](const char* flag, const char* env, const char* what) {
        std::string v = opt.get(flag, env);
        if (v.empty()) {
            v = wsgate::random_token(32);
            generated.push_back(std::string{what} + " (set " + env + " or --" + flag + ")");
        }
        return v;
    };
    const std::string admin_key = secret("admin-key", "WSGATE_ADMIN_KEY", "admin key");
    demo::AuthConfig auth_cfg;
    auth_cfg.session_secret = secret("session-secret", "WSGATE_SESSION_SECRET", "session token secret");
    auth_cfg.public_secret = secret("public-secret", "WSGATE_PUBLIC_TOKEN_SECRET", "public token secret");
    auth_cfg.allow_anonymous = opt.has("allow-anonymous");
    demo::DemoAuth auth;
    try {
        auth = demo::make_demo_auth(auth_cfg);
    } catch (const std::invalid_argument& e) {
        std::cerr << "realtime_server: " << e.what() << "\n";
        return 2;
    }

    wsgate::beast::ServerSettings ss;
    ss.address = opt.get("address", "WSGATE_ADDRESS", "127.0.0.1");
    ss.port = static_cast<unsigned short>(to_size(opt.get("port", "WSGATE_PORT", "8080"), 8080));
    ss.threads = to_size(opt.get("threads", "WSGATE_THREADS", "1"), 1);
    ss.max_message_bytes = to_size(opt.get("max-message-bytes", nullptr), 64 * 1024);
    ss.heartbeat_timeout = std::chrono::milliseconds(to_size(opt.get("heartbeat-timeout-ms", nullptr), 60'000));
    ss.max_connections = to_size(opt.get("max-connections", nullptr), ss.max_connections);
    ss.max_connections_per_address = to_size(opt.get("max-connections-per-address", nullptr), ss.max_connections_per_address);
    ss.queue_capacity = to_size(opt.get("queue", nullptr), 1024);
    ss.backpressure = opt.get("backpressure", nullptr, "drop") == "close" ? wsgate::beast::BackpressurePolicy::close
                                                                         : wsgate::beast::BackpressurePolicy::drop_newest;
    ss.static_root = opt.get("web-root", "WSGATE_WEB_ROOT", WSGATE_DEMO_WEB_ROOT);

    wsgate::GatewaySettings gs;
    gs.max_message_bytes = ss.max_message_bytes;
    gs.rate_per_second = to_double(opt.get("rate", nullptr), 20.0);
    gs.rate_burst = to_double(opt.get("burst", nullptr), 40.0);
    // Status boards (public tokens, and anonymous readers when allowed) read leaderboards and
    // events; users holding "publish" may publish events; every other topic is closed.
    gs.router.topic_rules = {{"leaderboard:*", "read_leaderboard", "", /*anonymous_read=*/true},
                             {"events:*", "read_events", "publish", /*anonymous_read=*/true}};

    gs.node_id = opt.get("node-id", "WSGATE_NODE_ID");
    gs.node_lease = std::chrono::milliseconds(to_size(opt.get("node-lease-ms", nullptr), 30'000));
    const std::string store_spec = opt.get("store", "WSGATE_STORE", "memory");
    const std::string bus_spec = opt.get("bus", "WSGATE_BUS", "none");
    std::shared_ptr<wsgate::ConnectionStore> store;
    std::shared_ptr<wsgate::Bus> bus;
    try {
#ifdef WSGATE_DEMO_HAVE_STORES
        store = wsgate::make_store(store_spec);
        bus = wsgate::make_bus(bus_spec);
#else
        if (store_spec != "memory" || (bus_spec != "none" && !bus_spec.empty()))
            throw std::invalid_argument("this build has no durable or distributed backends (WSGATE_WITH_SQLITE/REDIS)");
        store = std::make_shared<wsgate::InMemoryConnectionStore>();
#endif
    } catch (const std::exception& e) {
        std::cerr << "realtime_server: --store " << store_spec << " / --bus " << bus_spec << ": " << e.what() << "\n";
        return 2;
    }

    auto server = std::make_shared<wsgate::beast::Server>(ss);
    auto gateway = std::make_shared<wsgate::Gateway>(gs, store, server, auth.authorizer,
                                                     std::make_shared<wsgate::SystemClock>(), bus);
    server->attach(gateway);
    RecentEvents recent;

    using wsgate::beast::HttpRequest;
    using wsgate::beast::HttpResponse;
    server->route("GET", "/healthz", [&](const HttpRequest&) {
        return HttpResponse::json(200, nlohmann::json{{"status", "ok"},
                                                      {"connections", gateway->local_count()},
                                                      {"auth", auth.kind},
                                                      {"node", gateway->node_id()}}.dump());
    });
    server->route("GET", "/metrics", [&](const HttpRequest&) {
        HttpResponse r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = gateway->metrics().prometheus_text() + server->prometheus_text();
        return r;
    });
    server->route("POST", "/public/token", [&](const HttpRequest& req) {
        std::string device_id;
        if (!req.body.empty()) {
            auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (body.is_discarded() || !body.is_object())
                return HttpResponse::json(400, R"({"success":false,"error":"body must be a JSON object"})");
            if (auto it = body.find("deviceId"); it != body.end() && it->is_string()) device_id = it->get<std::string>();
            if (device_id.size() > 128) return HttpResponse::json(400, R"({"success":false,"error":"deviceId too long"})");
        }
        auto issued = auth.issue_public_token(device_id);
        return HttpResponse::json(issued.value("success", false) ? 200 : 400, issued.dump());
    });
    // The recent feed for pages polling while disconnected: a token is required (as for the
    // WebSocket), and only events of topics that token may read are returned.
    server->route("GET", "/public/recent", [&](const HttpRequest& req) {
        wsgate::ConnectRequest cr;
        cr.path = req.path;
        cr.query = req.query;
        cr.headers = req.headers;
        cr.source_ip = req.source_ip;
        wsgate::AuthDecision d;
        try {
            d = auth.authorizer->authorize(cr);
        } catch (const std::exception&) {
            d = wsgate::AuthDecision::deny(401, "auth_error");
        }
        if (!d.allowed)
            return HttpResponse::json(d.status == 403 ? 403 : 401,
                                      nlohmann::json{{"success", false}, {"error", d.reason}}.dump());
        const auto* topic = req.query.count("topic") ? &req.query.at("topic") : nullptr;
        auto readable = nlohmann::json::array();
        for (auto& e : recent.since(topic ? *topic : "")) {
            if (gateway->may_read(d.principal, e.value("topic", ""))) readable.push_back(std::move(e));
        }
        return HttpResponse::json(200, nlohmann::json{{"events", std::move(readable)}}.dump());
    });
    // Server-side publish: {"topic", "type", "data"?, "fields"?: {extra top-level fields}}.
    server->route("POST", "/publish", [&](const HttpRequest& req) {
        if (!admin_ok(req, admin_key)) return HttpResponse::json(401, R"({"success":false,"error":"admin key required"})");
        auto body = nlohmann::json::parse(req.body, nullptr, false);
        // Every field is type-checked here: a wrong type is the client's error (400), not a 500.
        const auto field_is = [&](const char* k, auto pred) { return !body.contains(k) || pred(body[k]); };
        if (body.is_discarded() || !body.is_object() || !body.contains("topic") || !body["topic"].is_string() ||
            !field_is("type", [](const nlohmann::json& v) { return v.is_string(); }) ||
            !field_is("fields", [](const nlohmann::json& v) { return v.is_object(); }))
            return HttpResponse::json(400, R"({"success":false,"error":"expected {\"topic\":string,\"type\":string,...}"})");
        std::string topic = body["topic"];
        std::string type = body.value("type", "event");
        wsgate::Envelope env{type};
        env.topic(topic).timestamp(gateway->clock().now());
        if (body.contains("data")) env.data(body["data"]);
        if (auto f = body.find("fields"); f != body.end() && f->is_object()) {
            for (const auto& [k, v] : f->items()) {
                if (k == "type" || k == "timestamp" || k == "id" || k == "topic" || k == "data") continue;
                env.field(k, v);
            }
        }
        recent.add(env.to_json(gateway->clock().now()));
        auto rep = gateway->publish(env, wsgate::Audience::topic(topic));
        return HttpResponse::json(200, nlohmann::json{{"success", true},
                                                      {"id", env.id()},
                                                      {"targets", rep.targets},
                                                      {"delivered", rep.delivered},
                                                      {"gone_removed", rep.gone_removed},
                                                      {"backpressured", rep.backpressured},
                                                      {"filtered", rep.filtered}}.dump());
    });

    // Handle SIGINT/SIGTERM on this thread only: block them before the io threads start.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    try {
        server->start();
    } catch (const std::exception& e) {
        std::cerr << "realtime_server: cannot listen on " << ss.address << ":" << ss.port << ": " << e.what() << "\n";
        return 1;
    }
    const unsigned short port = server->port();
    if (auto pf = opt.get("port-file", nullptr); !pf.empty()) {
        std::ofstream(pf + ".tmp") << port << "\n";
        std::rename((pf + ".tmp").c_str(), pf.c_str());
    }

    const std::string host = ss.address.find(':') != std::string::npos ? "[" + ss.address + "]" : ss.address;
    const std::string base = "http://" + host + ":" + std::to_string(port);
    std::cout << "wsgate realtime_server listening on " << base << " (WebSocket at ws://" << host << ":" << port
              << ss.ws_path << ")\n"
              << "  store: " << store_spec << ", bus: " << bus_spec << ", node: " << gateway->node_id() << "\n"
              << "  auth: " << auth.description << (auth_cfg.allow_anonymous ? "; anonymous allowed" : "") << "\n";
    for (const auto& g : generated) std::cout << "  generated a development " << g << "\n";
    if (!generated.empty() && !opt.has("admin-key") && !std::getenv("WSGATE_ADMIN_KEY"))
        std::cout << "  development admin key: " << admin_key << "\n";
    if (ss.static_root.empty()) std::cout << "  no --web-root: the status board page is not served\n";
    else std::cout << "\nOpen the status board:  " << base << "/\n";
    std::cout << "\nFrom a terminal:\n"
              << "  TOKEN=$(curl -s -X POST " << base << "/public/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"publicToken\"])')\n"
              << "  python3 -m websockets \"ws://" << host << ":" << port << ss.ws_path << "?token=$TOKEN\"\n"
              << "  > {\"type\":\"subscribe\",\"topic\":\"events:demo\"}\n"
              << "Publish (another terminal):\n"
              << "  curl -s -X POST " << base << "/publish -H 'X-Admin-Key: <admin key>' \\\n"
              << "    -d '{\"topic\":\"events:demo\",\"type\":\"activity_event\",\"data\":{\"text\":\"hello\"}}'\n"
              << "Metrics: curl -s " << base << "/metrics\n"
              << std::endl;

    // The reaper for TTL, idle time and maximum age; also renews this node's lease and reaps dead nodes.
    std::mutex sweep_mu;
    std::condition_variable sweep_cv;
    bool done = false;
    std::thread sweeper([&] {
        std::unique_lock lk(sweep_mu);
        while (!sweep_cv.wait_for(lk, std::chrono::seconds(1), [&] { return done; })) {
            lk.unlock();
            gateway->sweep();
            lk.lock();
        }
    });

    int sig = 0;
    sigwait(&sigs, &sig);
    std::cout << "realtime_server: shutting down (closing connections with 1001)" << std::endl;
    {
        std::lock_guard lk(sweep_mu);
        done = true;
    }
    sweep_cv.notify_all();
    sweeper.join();
    server->stop();
    return 0;
}
