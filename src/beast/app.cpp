// App: the Server, the Gateway and their plug-ins in one object, with timers on the io loop, the
// built-in sweep and graceful stop on SIGINT/SIGTERM.
#include <wsgate/beast/app.hpp>

#include "server_state.hpp"

#include <wsgate/memory_store.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <set>
#include <stdexcept>
#include <vector>

namespace wsgate::beast {

namespace {

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string{"wsgate::beast::App: "} + what);
}

void validate(const AppSettings& s, const std::shared_ptr<Authorizer>& authorizer) {
    require(s.sweep_interval.count() > 0, "AppSettings::sweep_interval must be positive");
    require(s.server.queue_capacity > 0, "ServerSettings::queue_capacity must be at least 1");
    require(s.server.max_batch_frames > 0, "ServerSettings::max_batch_frames must be at least 1");
    require(s.server.max_batch_bytes > 0, "ServerSettings::max_batch_bytes must be at least 1");
    require(s.server.max_message_bytes > 0, "ServerSettings::max_message_bytes must be at least 1");
    require(!s.server.ws_path.empty() && s.server.ws_path.front() == '/',
            "ServerSettings::ws_path must start with '/'");
    require(authorizer != nullptr, "an authorizer is required (AnonymousAuthorizer for anonymous readers)");
}

}  // namespace

struct App::Impl {
    // A repeating timer of every() (and the sweep). Its handler only runs on an io thread and
    // re-arms the timer after `fn` returned, so runs of one timer never overlap.
    struct Timer {
        Timer(net::io_context& ioc, std::chrono::milliseconds i, std::function<void()> f)
            : timer(ioc), interval(i), fn(std::move(f)) {}
        net::steady_timer timer;
        std::chrono::milliseconds interval;
        std::function<void()> fn;
    };

    Impl(AppSettings s, std::shared_ptr<Authorizer> a, AppPlugins p)
        : settings(std::move(s)), authorizer(std::move(a)), plugins(std::move(p)) {
        if (!plugins.store) plugins.store = std::make_shared<InMemoryConnectionStore>();
        if (!plugins.clock) plugins.clock = std::make_shared<SystemClock>();
        server = std::make_shared<Server>(settings.server);
        gateway = std::make_shared<Gateway>(settings.gateway, plugins.store, server, authorizer,
                                            plugins.clock, plugins.bus);
        server->attach(gateway);
    }

    net::io_context& ioc() { return server->impl_->ioc; }

    void arm(Timer& t) {
        t.timer.expires_after(t.interval);
        t.timer.async_wait([this, &t](boost::system::error_code ec) {
            if (ec) return;
            try {
                t.fn();
            } catch (...) {
                // A throwing callback must not end its timer (nor, through the io loop, others).
            }
            arm(t);
        });
    }

    void request_stop() {
        {
            std::lock_guard lk(mu);
            stop_requested = true;
        }
        cv.notify_all();
    }

    AppSettings settings;
    std::shared_ptr<Authorizer> authorizer;
    AppPlugins plugins;
    // Declared before the timers and the signal set, which live on the server's io_context and
    // so must be destroyed first.
    std::shared_ptr<Server> server;
    std::shared_ptr<Gateway> gateway;

    std::mutex mu;
    std::condition_variable cv;
    bool started = false;  // run() was called
    bool stop_requested = false;
    std::set<std::string> http_routes;
    std::function<void()> on_stop;

    std::mutex timers_mu;
    std::vector<std::unique_ptr<Timer>> timers;
    std::unique_ptr<net::signal_set> signals;
};

App::App(AppSettings settings, std::shared_ptr<Authorizer> authorizer, AppPlugins plugins) {
    validate(settings, authorizer);
    impl_ = std::make_unique<Impl>(std::move(settings), std::move(authorizer), std::move(plugins));
}

App::~App() = default;

App& App::on(const std::string& route, RouteHandler handler, RouteAccess access) {
    impl_->gateway->router().on(route, std::move(handler), access);
    return *this;
}

App& App::on(const std::string& route, const std::string& action, RouteHandler handler, RouteAccess access) {
    impl_->gateway->router().on(route, action, std::move(handler), access);
    return *this;
}

App& App::http(const std::string& method, const std::string& path, HttpHandler handler) {
    require(!method.empty() && std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }),
            "http(): the method must be upper case, like \"GET\"");
    require(!path.empty() && path.front() == '/', "http(): the path must start with '/'");
    require(static_cast<bool>(handler), "http(): the handler is empty");
    std::lock_guard lk(impl_->mu);
    if (impl_->started) throw std::logic_error("wsgate::beast::App: http() after run(): register routes before");
    if (!impl_->http_routes.insert(method + " " + path).second)
        throw std::invalid_argument("wsgate::beast::App: http(): " + method + " " + path + " is already registered");
    impl_->server->route(method, path, std::move(handler));
    return *this;
}

void App::every(std::chrono::milliseconds interval, std::function<void()> fn) {
    require(interval.count() > 0, "every(): the interval must be positive");
    require(static_cast<bool>(fn), "every(): the function is empty");
    std::lock_guard lk(impl_->timers_mu);
    auto& t = *impl_->timers.emplace_back(std::make_unique<Impl::Timer>(impl_->ioc(), interval, std::move(fn)));
    impl_->arm(t);
}

void App::post(std::function<void()> fn) {
    require(static_cast<bool>(fn), "post(): the function is empty");
    net::post(impl_->ioc(), std::move(fn));
}

void App::on_stop(std::function<void()> fn) {
    std::lock_guard lk(impl_->mu);
    impl_->on_stop = std::move(fn);
}

BroadcastReport App::publish(const Envelope& envelope, const Audience& audience) {
    return impl_->gateway->publish(envelope, audience);
}

void App::run() {
    auto& im = *impl_;
    {
        std::lock_guard lk(im.mu);
        if (im.started) throw std::logic_error("wsgate::beast::App: run() was already called");
        im.started = true;
    }
    if (im.settings.handle_signals) {
        // Installed before the socket listens, so a signal never meets the default action.
        im.signals = std::make_unique<net::signal_set>(im.ioc(), SIGINT, SIGTERM);
        im.signals->async_wait([&im](boost::system::error_code ec, int) {
            if (!ec) im.request_stop();
        });
    }
    every(im.settings.sweep_interval, [gw = im.gateway.get()] { gw->sweep(); });
    try {
        im.server->start();
    } catch (...) {
        im.server->stop();
        im.signals.reset();
        throw;
    }
    std::function<void()> on_stop;
    {
        std::unique_lock lk(im.mu);
        im.cv.wait(lk, [&] { return im.stop_requested; });
        on_stop = im.on_stop;
    }
    if (on_stop) on_stop();
    // Closes every connection with 1001, waits for the close handshakes, joins the io threads.
    im.server->stop();
    // The io threads are gone: the signal handlers (and the default actions) go back now.
    im.signals.reset();
}

void App::stop() { impl_->request_stop(); }

unsigned short App::port() const noexcept { return impl_->server->port(); }

Gateway& App::gateway() noexcept { return *impl_->gateway; }

Server& App::server() noexcept { return *impl_->server; }

const AppSettings& App::settings() const noexcept { return impl_->settings; }

}  // namespace wsgate::beast
