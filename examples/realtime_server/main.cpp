// realtime_server: the wsgate demo on wsgate::beast::App. A WebSocket endpoint, public token
// issuance, server-side publish for workflow steps and game actions, Prometheus metrics and the
// status board page. SIGINT/SIGTERM close every connection with 1001 and exit.
//
//   realtime_server [--address 127.0.0.1] [--port 8080] [--admin-key KEY] ...   (--help)
#include "demo_auth.hpp"
#include "demo_http.hpp"
#include "flags.hpp"

#include <wsgate/beast/app.hpp>
#include <wsgate/random.hpp>
#ifdef WSGATE_DEMO_HAVE_STORES
#include <wsgate/stores/factory.hpp>
#endif

#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <system_error>
#include <vector>

#ifndef WSGATE_DEMO_WEB_ROOT
#define WSGATE_DEMO_WEB_ROOT ""
#endif

using wsgate::beast::HttpRequest;
using wsgate::beast::HttpResponse;
using nlohmann::json;

int main(int argc, char** argv) {
    const demo::Options opt = demo::parse(argc, argv);
    // Secrets: flags or environment; otherwise development values that are said out loud.
    std::vector<std::string> generated;
    auto secret = [&](const char* flag, const char* env, const char* what) {
        std::string v = opt.get(flag, env);
        if (v.empty()) generated.push_back(std::string{what} + " (set " + env + " or --" + flag + ")");
        return v.empty() ? wsgate::random_token(32) : v;
    };
    const std::string admin_key = secret("admin-key", "WSGATE_ADMIN_KEY", "admin key");
    demo::AuthConfig auth_cfg{secret("session-secret", "WSGATE_SESSION_SECRET", "session token secret"),
                              secret("public-secret", "WSGATE_PUBLIC_TOKEN_SECRET", "public token secret"),
                              opt.has("allow-anonymous")};
    demo::DemoAuth auth;
    try {
        auth = demo::make_demo_auth(auth_cfg);
    } catch (const std::invalid_argument& e) {
        std::cerr << "realtime_server: " << e.what() << "\n";
        return 2;
    }
    const wsgate::beast::AppSettings settings = demo::app_settings(opt, WSGATE_DEMO_WEB_ROOT);
    const auto& ss = settings.server;

    const std::string store_spec = opt.get("store", "WSGATE_STORE", "memory");
    const std::string bus_spec = opt.get("bus", "WSGATE_BUS", "none");
    wsgate::beast::AppPlugins plugins;  // the in-memory store unless --store says otherwise
    try {
#ifdef WSGATE_DEMO_HAVE_STORES
        plugins.store = wsgate::make_store(store_spec);
        plugins.bus = wsgate::make_bus(bus_spec);
#else
        if (store_spec != "memory" || (bus_spec != "none" && !bus_spec.empty()))
            throw std::invalid_argument("this build has no durable or distributed backends (WSGATE_WITH_SQLITE/REDIS)");
#endif
    } catch (const std::exception& e) {
        std::cerr << "realtime_server: --store " << store_spec << " / --bus " << bus_spec << ": " << e.what() << "\n";
        return 2;
    }

    wsgate::beast::App app{settings, auth.authorizer, plugins};
    auto& gateway = app.gateway();
    demo::RecentEvents recent;
    // 200 even when degraded: this node still serves its own clients, and a load balancer that
    // drained every node during a Redis outage would serve nobody.
    app.http("GET", "/healthz", [&](const HttpRequest&) {
        const auto h = gateway.health();
        return HttpResponse::json(200, json{{"status", h.status()},
                                            {"store", h.store_ok ? "ok" : "unavailable"},
                                            {"bus", h.bus_ok ? "ok" : "unavailable"},
                                            {"connections", gateway.local_count()},
                                            {"auth", auth.kind},
                                            {"node", gateway.node_id()}}.dump());
    });
    app.http("GET", "/metrics", [&](const HttpRequest&) {
        HttpResponse r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = gateway.metrics().prometheus_text() + app.server().prometheus_text();
        return r;
    });
    app.http("POST", "/public/token", [&](const HttpRequest& req) {
        std::string device_id;
        if (auto error = demo::token_request_device_id(req.body, device_id))
            return HttpResponse::json(400, json{{"success", false}, {"error", *error}}.dump());
        auto issued = auth.issue_public_token(device_id);
        return HttpResponse::json(issued.value("success", false) ? 200 : 400, issued.dump());
    });
    // The recent feed for pages polling while disconnected: a token is required (as for the
    // WebSocket), and only events of topics that token may read are returned.
    app.http("GET", "/public/recent", [&](const HttpRequest& req) {
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
        if (!d.allowed) return HttpResponse::json(d.status == 403 ? 403 : 401, json{{"success", false}, {"error", d.reason}}.dump());
        auto readable = json::array();
        for (auto& e : recent.since(req.query.count("topic") ? req.query.at("topic") : ""))
            if (gateway.may_read(d.principal, e.value("topic", ""))) readable.push_back(std::move(e));
        return HttpResponse::json(200, json{{"events", std::move(readable)}}.dump());
    });
    // Server-side publish to the topic's subscribers; the admin key is required.
    app.http("POST", "/publish", [&](const HttpRequest& req) {
        if (!demo::admin_ok(req, admin_key)) return HttpResponse::json(401, R"({"success":false,"error":"admin key required"})");
        auto env = demo::publish_envelope(req.body, gateway.clock().now());
        if (!env) return HttpResponse::json(400, R"({"success":false,"error":"expected {\"topic\":string,\"type\":string,...}"})");
        recent.add(env->to_json(gateway.clock().now()));
        auto rep = app.publish(*env, wsgate::Audience::topic(*env->topic()));
        json out{{"success", !rep.degraded}, {"id", env->id()}, {"targets", rep.targets},
                 {"delivered", rep.delivered}, {"gone_removed", rep.gone_removed},
                 {"backpressured", rep.backpressured}, {"filtered", rep.filtered}};
        if (rep.offset > 0) out["offset"] = rep.offset;
        // 503: some subscribers (on other nodes, or recovering from history) may not have it.
        if (rep.degraded) {
            out["degraded"] = true;
            out["reason"] = rep.degraded_reason;
            return HttpResponse::json(503, out.dump());
        }
        return HttpResponse::json(200, out.dump());
    });

    // Runs once the socket listens: the port file and the banner.
    app.post([&] {
        const unsigned short port = app.port();
        if (auto pf = opt.get("port-file", nullptr); !pf.empty()) {
            std::ofstream(pf + ".tmp") << port << "\n";
            std::rename((pf + ".tmp").c_str(), pf.c_str());
        }
        demo::print_banner(std::cout, ss, port, store_spec + ", bus: " + bus_spec + ", node: " + gateway.node_id(),
                           auth.description + (auth_cfg.allow_anonymous ? "; anonymous allowed" : ""), generated,
                           !opt.has("admin-key") && !std::getenv("WSGATE_ADMIN_KEY") ? admin_key : "");
    });
    app.on_stop([] { std::cout << "realtime_server: shutting down (closing connections with 1001)" << std::endl; });
    try {
        app.run();
    } catch (const std::system_error& e) {
        std::cerr << "realtime_server: cannot listen on " << ss.address << ":" << ss.port << ": " << e.code().message() << "\n";
        return 1;
    }
    return 0;
}
