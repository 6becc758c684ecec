#include <wsgate/beast/reconnecting_client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace wsgate::beast {

namespace {

// `url` with query parameter `name` set to `value` (percent-encoded); an existing `name` is replaced.
std::string with_query_parameter(const std::string& url, const std::string& name, const std::string& value) {
    const auto hash = url.find('#');
    const std::string base = url.substr(0, hash);
    const std::string fragment = hash == std::string::npos ? std::string{} : url.substr(hash);
    const auto q = base.find('?');
    std::string out = base.substr(0, q);
    std::string query;
    if (q != std::string::npos) {
        std::string_view rest = std::string_view{base}.substr(q + 1);
        while (!rest.empty()) {
            const auto amp = rest.find('&');
            const auto part = rest.substr(0, amp);
            const bool same = part == name || (part.size() > name.size() && part.substr(0, name.size()) == name &&
                                               part[name.size()] == '=');
            if (!part.empty() && !same) {
                if (!query.empty()) query += '&';
                query += part;
            }
            if (amp == std::string_view::npos) break;
            rest.remove_prefix(amp + 1);
        }
    }
    if (!query.empty()) query += '&';
    query += name + '=';
    static constexpr char hex[] = "0123456789ABCDEF";
    for (unsigned char ch : value) {
        if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            query += static_cast<char>(ch);
        } else {
            query += '%';
            query += hex[ch >> 4];
            query += hex[ch & 15];
        }
    }
    return out + '?' + query + fragment;
}

}  // namespace

ReconnectingClient::ReconnectingClient(std::string url, ReconnectingClientSettings settings,
                                       std::shared_ptr<const Clock> clock)
    : url_(std::move(url)), settings_(std::move(settings)), clock_(std::move(clock)),
      machine_(clock_, settings_.machine), io_(1) {}

ReconnectingClient::~ReconnectingClient() { stop(); }

void ReconnectingClient::on_message(MessageHandler h) { on_message_ = std::move(h); }
void ReconnectingClient::on_state(StateHandler h) { on_state_ = std::move(h); }
void ReconnectingClient::on_polling(PollingHandler h) { on_polling_ = std::move(h); }
void ReconnectingClient::on_recovery(RecoveryHandler h) { on_recovery_ = std::move(h); }
void ReconnectingClient::set_token_provider(TokenProvider p) { token_provider_ = std::move(p); }

void ReconnectingClient::start() {
    std::lock_guard lock(mu_);
    if (worker_.joinable() || stopping_) return;
    events_.push_back({Event::Kind::command, 0, 0, {}, [](client::ClientStateMachine& m) { return m.connect(); }});
    worker_ = std::thread([this] { run(); });
}

void ReconnectingClient::stop() {
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void ReconnectingClient::post(Event e) {
    {
        std::lock_guard lock(mu_);
        events_.push_back(std::move(e));
    }
    cv_.notify_all();
}

void ReconnectingClient::send(std::string text) {
    post({Event::Kind::command, 0, 0, {}, [t = std::move(text)](client::ClientStateMachine& m) { return m.send(t); }});
}
void ReconnectingClient::subscribe(const std::string& topic) {
    tracker_.subscribe(topic);
    post({Event::Kind::command, 0, 0, {}, [topic](client::ClientStateMachine& m) { return m.subscribe(topic); }});
}
void ReconnectingClient::unsubscribe(const std::string& topic) {
    tracker_.unsubscribe(topic);
    post({Event::Kind::command, 0, 0, {}, [topic](client::ClientStateMachine& m) { return m.unsubscribe(topic); }});
}
void ReconnectingClient::suspend() {
    post({Event::Kind::command, 0, 0, {}, [](client::ClientStateMachine& m) { return m.suspend(); }});
}
void ReconnectingClient::resume() {
    post({Event::Kind::command, 0, 0, {}, [](client::ClientStateMachine& m) { return m.resume(); }});
}
void ReconnectingClient::set_url(std::string url) {
    std::lock_guard lock(mu_);
    url_ = std::move(url);
}

client::ConnectionState ReconnectingClient::state() const { return machine_.state(); }
bool ReconnectingClient::should_poll() const { return machine_.should_poll(); }
std::optional<std::uint16_t> ReconnectingClient::last_close_code() const { return machine_.last_close_code(); }

std::string ReconnectingClient::current_token() {
    if (!token_provider_) return {};
    try {
        return token_provider_();
    } catch (...) {
        return {};  // a failing provider is a provider with no token now
    }
}

client::Actions ReconnectingClient::answer_token_expiring(std::string_view text) {
    // Cheap test first: most frames are not this event.
    if (!token_provider_ || text.find("token_expiring") == std::string_view::npos) return {};
    const auto msg = nlohmann::json::parse(text, nullptr, false);
    if (!msg.is_object() || msg.value("type", std::string{}) != "token_expiring") return {};
    const std::string token = current_token();
    if (token.empty()) return {};
    return machine_.send(nlohmann::json{{"type", "refresh"}, {"token", token}}.dump());
}

void ReconnectingClient::open_socket() {
    const auto gen = ++generation_;
    socket_ = std::make_shared<Client>(io_, settings_.socket);
    // Events of an older socket carry an older generation and are ignored.
    socket_->on_message([this, gen](std::string_view m) { post({Event::Kind::message, gen, 0, std::string{m}, {}}); });
    socket_->on_close([this, gen](int code, std::string_view) {
        post({Event::Kind::close, gen, static_cast<std::uint16_t>(code), {}, {}});
    });
    std::string url;
    {
        std::lock_guard lock(mu_);
        url = url_;
    }
    if (token_provider_) {
        const std::string token = current_token();
        if (!token.empty()) url = with_query_parameter(url, settings_.token_query_parameter, token);
    }
    socket_->async_connect(
        url,
        [this, gen](std::error_code ec) { post({ec ? Event::Kind::error : Event::Kind::open, gen, 0, {}, {}}); },
        settings_.connect_timeout);
}

void ReconnectingClient::execute(const client::Actions& actions) {
    using K = client::Action::Kind;
    for (const auto& a : actions) {
        switch (a.kind) {
            case K::open_socket: open_socket(); break;
            case K::close_socket:
                if (socket_) {
                    socket_->close(static_cast<CloseCode>(a.close_code), a.text, std::chrono::milliseconds{500});
                    socket_.reset();
                }
                ++generation_;
                break;
            case K::send_frame:
                // (Re)subscribe frames ask for what was missed since the tracked position.
                if (socket_) {
                    if (auto resumed = tracker_.with_since(a.text)) socket_->send(std::move(*resumed));
                    else socket_->send(a.text);
                }
                break;
            case K::deliver: {
                auto seen = tracker_.inspect(a.text);
                if (seen.duplicate) break;
                if (seen.recovery && on_recovery_) on_recovery_(*seen.recovery);
                if (on_message_) on_message_(a.text);
                break;
            }
            case K::start_polling:
                if (on_polling_) on_polling_(true);
                break;
            case K::stop_polling:
                if (on_polling_) on_polling_(false);
                break;
        }
    }
    const auto s = machine_.state();
    if (s != last_state_) {
        last_state_ = s;
        if (on_state_) on_state_(s);
    }
}

void ReconnectingClient::run() {
    for (;;) {
        std::deque<Event> batch;
        {
            std::unique_lock lock(mu_);
            auto deadline = machine_.next_deadline();
            auto wait = std::chrono::milliseconds{50};
            if (deadline) {
                auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - clock_->now());
                wait = std::clamp(until, std::chrono::milliseconds{1}, std::chrono::milliseconds{50});
            }
            cv_.wait_for(lock, wait, [&] { return stopping_ || !events_.empty(); });
            if (stopping_) break;
            batch.swap(events_);
        }
        for (auto& e : batch) {
            client::Actions actions;
            switch (e.kind) {
                case Event::Kind::command: actions = e.command(machine_); break;
                case Event::Kind::open:
                    if (e.generation != generation_) continue;
                    ++opened_;
                    actions = machine_.on_open();
                    break;
                case Event::Kind::error:
                    if (e.generation != generation_) continue;
                    socket_.reset();
                    actions = machine_.on_error();
                    break;
                case Event::Kind::close:
                    if (e.generation != generation_) continue;
                    socket_.reset();
                    actions = machine_.on_close(e.code);
                    break;
                case Event::Kind::message:
                    if (e.generation != generation_) continue;
                    actions = machine_.on_message(e.text);
                    for (auto& a : answer_token_expiring(e.text)) actions.push_back(std::move(a));
                    break;
            }
            execute(actions);
        }
        execute(machine_.tick());
    }
    // Leaving: close the socket politely.
    execute(machine_.close());
    if (socket_) {
        socket_->close(CloseCode::normal, "client stopping", std::chrono::milliseconds{500});
        socket_.reset();
    }
}

}  // namespace wsgate::beast
