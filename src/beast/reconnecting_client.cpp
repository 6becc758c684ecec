#include <wsgate/beast/reconnecting_client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>

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

constexpr std::chrono::milliseconds max_deadline = std::chrono::hours{24};
constexpr std::uint16_t close_normal = 1000;

void check_deadline(std::chrono::milliseconds d, const char* name, bool zero_ok) {
    if (d.count() < 0 || (d.count() == 0 && !zero_ok) || d > max_deadline)
        throw std::invalid_argument(std::string{"wsgate::beast::ReconnectingClient: "} + name +
                                    (zero_ok ? " must be within 0..24 h" : " must be within 1 ms..24 h"));
}

ReconnectingClientSettings checked(const std::string& url, ReconnectingClientSettings s) {
    if (url.rfind("ws://", 0) != 0)
        throw std::invalid_argument("wsgate::beast::ReconnectingClient: the URL must start with ws://");
    check_deadline(s.token_timeout, "token_timeout", false);
    check_deadline(s.connect_timeout, "connect_timeout", false);
    check_deadline(s.handshake_timeout, "handshake_timeout", false);
    check_deadline(s.subscribe_ack_timeout, "subscribe_ack_timeout", true);
    if (s.token_query_parameter.empty())
        throw std::invalid_argument("wsgate::beast::ReconnectingClient: token_query_parameter is empty");
    // An unanswered subscribe fails the attempt, so an open socket is not yet a success.
    if (s.subscribe_ack_timeout.count() > 0) s.machine.require_ready = true;
    return s;
}

std::shared_ptr<const Clock> non_null(std::shared_ptr<const Clock> c) {
    if (!c) throw std::invalid_argument("wsgate::beast::ReconnectingClient: clock is null");
    return c;
}

bool is_token_expiring(std::string_view text) {
    // Cheap test first: most frames are not this event.
    if (text.find("token_expiring") == std::string_view::npos) return false;
    const auto msg = nlohmann::json::parse(text, nullptr, false);
    if (!msg.is_object()) return false;
    const auto t = msg.find("type");
    return t != msg.end() && t->is_string() && t->get_ref<const std::string&>() == "token_expiring";
}

}  // namespace

ReconnectingClient::ReconnectingClient(std::string url, ReconnectingClientSettings settings,
                                       std::shared_ptr<const Clock> clock)
    : url_(std::move(url)), settings_(checked(url_, std::move(settings))), clock_(non_null(std::move(clock))),
      machine_(clock_, settings_.machine), io_(1) {}

ReconnectingClient::~ReconnectingClient() { stop(); }

void ReconnectingClient::on_message(MessageHandler h) { dispatcher_.otherwise(std::move(h)); }
void ReconnectingClient::on(std::string type, TypedHandler h) { dispatcher_.on(std::move(type), std::move(h)); }
void ReconnectingClient::on_state(StateHandler h) { on_state_ = std::move(h); }
void ReconnectingClient::on_status(StatusHandler h) { on_status_ = std::move(h); }
void ReconnectingClient::on_polling(PollingHandler h) { on_polling_ = std::move(h); }
void ReconnectingClient::on_recovery(RecoveryHandler h) { on_recovery_ = std::move(h); }
void ReconnectingClient::set_token_provider(TokenProvider p) { token_provider_ = std::move(p); }

// ---- lifecycle ------------------------------------------------------------------------------

void ReconnectingClient::start() {
    std::lock_guard lifecycle(lifecycle_mu_);
    Event connect{Event::Kind::command, 0, 0, {}, [](client::ClientStateMachine& m) { return m.connect(); }};
    if (worker_.joinable()) {  // running: connect now (a fresh backoff after giving up)
        post(std::move(connect));
        return;
    }
    {
        std::lock_guard lock(mu_);
        events_.push_back(std::move(connect));
    }
    worker_ = std::thread([this] { run(); });
}

void ReconnectingClient::retry() {
    post({Event::Kind::command, 0, 0, {}, [](client::ClientStateMachine& m) { return m.retry(); }});
}

void ReconnectingClient::stop() {
    std::lock_guard lifecycle(lifecycle_mu_);
    if (!worker_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();
    // The provider call in progress must end before this object may go.
    if (token_call_.valid()) token_call_.wait();
    token_call_ = {};
    token_inflight_ = false;
    awaiting_token_ = false;
    refresh_wanted_ = false;
    std::lock_guard lock(mu_);
    stopping_ = false;
    // Socket and token events belong to the run that ended; the host's commands stay for the next.
    std::erase_if(events_, [](const Event& e) { return e.kind != Event::Kind::command; });
}

void ReconnectingClient::post(Event e) {
    {
        std::lock_guard lock(mu_);
        events_.push_back(std::move(e));
    }
    cv_.notify_all();
}

// ---- host commands --------------------------------------------------------------------------

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

// ---- observers ------------------------------------------------------------------------------

client::ConnectionState ReconnectingClient::state() const { return machine_.state(); }
bool ReconnectingClient::should_poll() const { return machine_.should_poll(); }
std::optional<std::uint16_t> ReconnectingClient::last_close_code() const { return machine_.last_close_code(); }

ReconnectingClientStatus ReconnectingClient::status() const {
    ReconnectingClientStatus s;
    static_cast<client::ClientStatus&>(s) = machine_.status();
    {
        std::lock_guard lock(mu_);
        s.last_failure = last_failure_;
    }
    s.connections_opened = opened_.load();
    return s;
}

void ReconnectingClient::set_failure(std::string text) {
    std::lock_guard lock(mu_);
    last_failure_ = std::move(text);
}

void ReconnectingClient::publish_status() {
    auto s = status();
    // The countdown alone is no change: compare without it.
    auto key = s;
    key.next_attempt_in.reset();
    if (last_status_ && *last_status_ == key) return;
    last_status_ = std::move(key);
    if (on_status_) on_status_(s);
}

// ---- attempts -------------------------------------------------------------------------------

void ReconnectingClient::forget_socket() {
    socket_.reset();
    pending_acks_.clear();
    awaiting_token_ = false;
}

void ReconnectingClient::begin_attempt() {
    ++generation_;  // events of an older socket carry an older generation and are ignored
    forget_socket();
    if (!token_provider_) {
        connect_socket({});
        return;
    }
    awaiting_token_ = true;
    token_deadline_ = clock_->now() + settings_.token_timeout;
    request_token();
}

void ReconnectingClient::request_token() {
    // One call at a time: an attempt that finds a call still running waits for its result.
    if (token_inflight_) return;
    token_inflight_ = true;
    token_call_ = std::async(std::launch::async, [this, provider = token_provider_] {
        std::string token;
        try {
            token = provider();
        } catch (...) {
            token.clear();  // a failing provider is a provider with no token now
        }
        post({Event::Kind::token, 0, 0, std::move(token), {}});
    });
}

void ReconnectingClient::connect_socket(const std::string& token) {
    awaiting_token_ = false;
    const auto gen = generation_;
    socket_ = std::make_shared<Client>(io_, settings_.socket);
    socket_->on_message([this, gen](std::string_view m) { post({Event::Kind::message, gen, 0, std::string{m}, {}}); });
    socket_->on_close([this, gen](int code, std::string_view) {
        post({Event::Kind::close, gen, static_cast<std::uint16_t>(code), {}, {}});
    });
    std::string url;
    {
        std::lock_guard lock(mu_);
        url = url_;
    }
    if (!token.empty()) url = with_query_parameter(url, settings_.token_query_parameter, token);
    socket_->async_connect(
        url,
        [this, gen](std::error_code ec) {
            const bool timed_out = ec == std::errc::timed_out;
            post({ec ? Event::Kind::error : Event::Kind::open, gen, std::uint16_t{timed_out}, ec ? ec.message() : "", {}});
        },
        ConnectTimeouts{settings_.connect_timeout, settings_.handshake_timeout});
}

std::string ReconnectingClient::describe_connect_failure(const Event& e) const {
    const ConnectStep step = socket_ ? socket_->failed_step() : ConnectStep::none;
    const std::string what = step == ConnectStep::none ? std::string{"connect"} : std::string{to_string(step)};
    if (e.code == 1) return what + " timed out";
    if (step == ConnectStep::handshake && socket_) {
        const int status = socket_->handshake_status();
        if (status >= 300) return "upgrade refused (HTTP " + std::to_string(status) + ")";
    }
    return what + " failed: " + e.text;
}

void ReconnectingClient::fail_attempt(std::string failure, std::uint16_t close_code, std::string reason) {
    set_failure(std::move(failure));
    execute(machine_.abandon(close_code, std::move(reason)));
}

void ReconnectingClient::check_deadlines(TimePoint now) {
    if (awaiting_token_ && now >= token_deadline_) {
        awaiting_token_ = false;
        fail_attempt("token request timed out", close_normal, "token timeout");
    }
    const auto late = std::find_if(pending_acks_.begin(), pending_acks_.end(),
                                   [&](const auto& p) { return now >= p.second.deadline; });
    if (late != pending_acks_.end()) {
        std::string failure = "subscribe to '" + late->second.topic + "' not acknowledged in time";
        fail_attempt(std::move(failure), settings_.machine.heartbeat_close_code, "subscribe not acknowledged");
    }
}

std::optional<TimePoint> ReconnectingClient::next_wakeup() const {
    auto at = machine_.next_deadline();
    const auto earlier = [&](TimePoint t) {
        if (!at || t < *at) at = t;
    };
    if (awaiting_token_) earlier(token_deadline_);
    for (const auto& [ref, p] : pending_acks_) earlier(p.deadline);
    return at;
}

// ---- subscribe acks -------------------------------------------------------------------------

std::string ReconnectingClient::prepare_frame(std::string frame) {
    if (settings_.subscribe_ack_timeout.count() == 0 || frame.find("subscribe") == std::string::npos) return frame;
    auto msg = nlohmann::json::parse(frame, nullptr, false);
    if (!msg.is_object()) return frame;
    const auto type = msg.find("type");
    const auto topic = msg.find("topic");
    if (type == msg.end() || !type->is_string() || topic == msg.end() || !topic->is_string()) return frame;
    const auto& name = topic->get_ref<const std::string&>();
    if (*type == "unsubscribe") {
        std::erase_if(pending_acks_, [&](const auto& p) { return p.second.topic == name; });
        return frame;
    }
    if (*type != "subscribe") return frame;
    if (!msg.contains("ref")) {
        msg["ref"] = "sub-" + std::to_string(++next_ref_);
        frame = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    pending_acks_.insert_or_assign(msg["ref"].dump(), PendingAck{name, clock_->now() + settings_.subscribe_ack_timeout});
    return frame;
}

void ReconnectingClient::note_answer(std::string_view text) {
    if (pending_acks_.empty()) return;
    if (text.find("ref") == std::string_view::npos && text.find("ack") == std::string_view::npos) return;
    const auto msg = nlohmann::json::parse(text, nullptr, false);
    if (!msg.is_object()) return;
    if (const auto ref = msg.find("ref"); ref != msg.end()) {
        pending_acks_.erase(ref->dump());
        return;
    }
    // An ack without a ref (a server that does not echo refs) still names its topic.
    if (msg.value("type", nlohmann::json{}) == "ack" && msg.value("action", nlohmann::json{}) == "subscribe") {
        if (const auto topic = msg.find("topic"); topic != msg.end() && topic->is_string())
            std::erase_if(pending_acks_, [&](const auto& p) { return p.second.topic == *topic; });
    }
}

// ---- the worker -----------------------------------------------------------------------------

void ReconnectingClient::execute(const client::Actions& actions) {
    using K = client::Action::Kind;
    for (const auto& a : actions) {
        switch (a.kind) {
            case K::open_socket: begin_attempt(); break;
            case K::close_socket:
                if (a.text == "heartbeat timeout" || a.text == "open timeout") set_failure(a.text);
                if (socket_) socket_->close(static_cast<CloseCode>(a.close_code), a.text, std::chrono::milliseconds{500});
                forget_socket();
                ++generation_;
                break;
            case K::send_frame:
                if (socket_) {
                    // (Re)subscribe frames ask for what was missed since the tracked position.
                    auto resumed = tracker_.with_since(a.text);
                    socket_->send(prepare_frame(resumed ? std::move(*resumed) : a.text));
                }
                break;
            case K::deliver: {
                auto seen = tracker_.inspect(a.text);
                if (seen.duplicate) break;
                if (seen.recovery && on_recovery_) on_recovery_(*seen.recovery);
                dispatcher_.dispatch(a.text);
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

void ReconnectingClient::handle(Event& e) {
    switch (e.kind) {
        case Event::Kind::command: execute(e.command(machine_)); break;
        case Event::Kind::token:
            token_inflight_ = false;
            if (refresh_wanted_) {
                refresh_wanted_ = false;
                if (!e.text.empty() && machine_.state() == client::ConnectionState::connected)
                    execute(machine_.send(nlohmann::json{{"type", "refresh"}, {"token", e.text}}.dump(
                        -1, ' ', false, nlohmann::json::error_handler_t::replace)));
            }
            // A result nobody waits for (its attempt timed out and was closed) is dropped.
            if (awaiting_token_) connect_socket(e.text);
            break;
        case Event::Kind::open:
            if (e.generation != generation_) return;
            ++opened_;
            set_failure({});
            execute(machine_.on_open());
            break;
        case Event::Kind::error:
            if (e.generation != generation_) return;
            set_failure(describe_connect_failure(e));
            forget_socket();
            execute(machine_.on_error());
            break;
        case Event::Kind::close:
            if (e.generation != generation_) return;
            set_failure("connection closed (" + std::to_string(e.code) + ")");
            forget_socket();
            execute(machine_.on_close(e.code));
            break;
        case Event::Kind::message:
            if (e.generation != generation_) return;
            note_answer(e.text);
            if (token_provider_ && is_token_expiring(e.text)) {
                refresh_wanted_ = true;
                request_token();
            }
            execute(machine_.on_message(e.text));
            break;
    }
    // Every subscribe answered: the connection is established (resets the backoff).
    if (socket_ && pending_acks_.empty() && machine_.state() == client::ConnectionState::connected)
        execute(machine_.ready());
}

void ReconnectingClient::run() {
    for (;;) {
        std::deque<Event> batch;
        {
            const auto wake = next_wakeup();
            auto wait = std::chrono::milliseconds{50};
            if (wake) {
                const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*wake - clock_->now());
                wait = std::clamp(until, std::chrono::milliseconds{1}, std::chrono::milliseconds{50});
            }
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, wait, [&] { return stopping_ || !events_.empty(); });
            if (stopping_) break;
            batch.swap(events_);
        }
        for (auto& e : batch) {
            handle(e);
            publish_status();
        }
        check_deadlines(clock_->now());
        execute(machine_.tick());
        publish_status();
    }
    // Leaving: close the socket politely.
    execute(machine_.close());
    if (socket_) socket_->close(CloseCode::normal, "client stopping", std::chrono::milliseconds{500});
    forget_socket();
    ++generation_;
    publish_status();
}

}  // namespace wsgate::beast
