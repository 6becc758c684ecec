// The reconnecting client's state machine: pure logic, actions returned to the host.
#include <wsgate/client/client_state_machine.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsgate::client {

std::string_view to_string(ConnectionState s) noexcept {
    switch (s) {
        case ConnectionState::disconnected: return "disconnected";
        case ConnectionState::connecting: return "connecting";
        case ConnectionState::connected: return "connected";
        case ConnectionState::reconnecting: return "reconnecting";
        case ConnectionState::error: break;
    }
    return "error";
}

namespace {

constexpr std::uint16_t close_normal = 1000;

std::shared_ptr<const Clock> checked(std::shared_ptr<const Clock> c) {
    if (!c) throw std::invalid_argument("wsgate::client::ClientStateMachine: clock is null");
    return c;
}

std::string topic_frame(std::string_view type, std::string_view topic) {
    // Invalid UTF-8 in a topic is replaced rather than thrown on; the server will refuse the topic.
    return nlohmann::json{{"type", type}, {"topic", topic}}.dump(-1, ' ', false,
                                                                 nlohmann::json::error_handler_t::replace);
}

}  // namespace

ClientStateMachine::ClientStateMachine(std::shared_ptr<const Clock> clock, ClientSettings settings,
                                       RandomSource random)
    : clock_(checked(std::move(clock))),
      settings_(std::move(settings)),
      policy_(settings_.reconnect, std::move(random)),
      heartbeat_(settings_.heartbeat) {
    if (settings_.open_timeout.count() < 0)
        throw std::invalid_argument("wsgate::client::ClientStateMachine: open_timeout must not be negative");
    if (settings_.probe_interval.count() < 0)
        throw std::invalid_argument("wsgate::client::ClientStateMachine: probe_interval must not be negative");
    if (settings_.heartbeat_enabled && settings_.ping_frame.empty())
        throw std::invalid_argument("wsgate::client::ClientStateMachine: ping_frame is empty");
}

std::string ClientStateMachine::subscribe_frame(std::string_view topic) { return topic_frame("subscribe", topic); }
std::string ClientStateMachine::unsubscribe_frame(std::string_view topic) {
    return topic_frame("unsubscribe", topic);
}

// ---- internals (mutex held) ---------------------------------------------------------------

void ClientStateMachine::set_polling(bool on, Actions& out) {
    if (on == polling_) return;
    polling_ = on;
    out.push_back(on ? Action::start_polling() : Action::stop_polling());
}

void ClientStateMachine::restart_locked(TimePoint now, Actions& out) {
    policy_.reset();
    gave_up_ = false;
    probing_ = false;
    state_ = ConnectionState::connecting;
    set_polling(false, out);
    open_locked(now, out);
}

void ClientStateMachine::open_locked(TimePoint now, Actions& out) {
    socket_ = Socket::opening;
    opening_since_ = now;
    reconnect_at_.reset();
    out.push_back(Action::open_socket());
}

void ClientStateMachine::lost_locked(TimePoint now, bool error, std::optional<std::uint16_t> code, Actions& out) {
    socket_ = Socket::none;
    heartbeat_.stop();
    if (code) last_close_code_ = code;
    const bool pointless =
        code && std::find(settings_.no_reconnect_codes.begin(), settings_.no_reconnect_codes.end(), *code) !=
                    settings_.no_reconnect_codes.end();
    std::optional<Duration> delay;
    if (settings_.auto_reconnect && !pointless) delay = policy_.next_delay();
    if (!delay) {
        state_ = ConnectionState::disconnected;
        gave_up_ = true;
        reconnect_at_.reset();
        // Only the attempt cap is worth probing past: a no-reconnect close code or a host that
        // turned reconnecting off means trying again would not help.
        probing_ = settings_.auto_reconnect && !pointless && settings_.probe_interval.count() > 0;
        if (probing_) reconnect_at_ = now + settings_.probe_interval + policy_.jitter();
        set_polling(true, out);
        return;
    }
    state_ = error ? ConnectionState::error : ConnectionState::reconnecting;
    reconnect_at_ = now + *delay;
    set_polling(true, out);
}

void ClientStateMachine::tick_locked(TimePoint now, Actions& out) {
    if (socket_ == Socket::opening) {
        if (settings_.open_timeout.count() > 0 && now - opening_since_ >= settings_.open_timeout) {
            out.push_back(Action::close_socket(close_normal, "open timeout"));
            lost_locked(now, false, std::nullopt, out);
        }
        return;
    }
    if (socket_ == Socket::open) {
        if (!settings_.heartbeat_enabled) return;
        switch (heartbeat_.tick(now)) {
            case Heartbeat::Due::send_ping: out.push_back(Action::send_frame(settings_.ping_frame)); break;
            case Heartbeat::Due::timed_out:
                out.push_back(Action::close_socket(settings_.heartbeat_close_code, "heartbeat timeout"));
                lost_locked(now, false, std::nullopt, out);
                break;
            case Heartbeat::Due::nothing: break;
        }
        return;
    }
    if (!suspended_ && reconnect_at_ && now >= *reconnect_at_ &&
        (state_ == ConnectionState::reconnecting || state_ == ConnectionState::error ||
         (state_ == ConnectionState::disconnected && probing_))) {
        state_ = ConnectionState::reconnecting;
        open_locked(now, out);
    }
}

bool ClientStateMachine::is_pong(std::string_view text) const {
    if (text.find(settings_.pong_type) == std::string_view::npos) return false;  // cheap pre-check
    const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return false;
    const auto it = j.find("type");
    return it != j.end() && it->is_string() && it->get_ref<const std::string&>() == settings_.pong_type;
}

// ---- host commands ------------------------------------------------------------------------

Actions ClientStateMachine::connect() { return start(false); }

Actions ClientStateMachine::retry() { return start(true); }

// connect() and retry(): from `disconnected` start over; while waiting for the backoff timer go
// now (retry() with a fresh budget, also while a socket is opening); otherwise nothing.
Actions ClientStateMachine::start(bool fresh_budget) {
    std::lock_guard lock{mutex_};
    Actions out;
    const auto now = clock_->now();
    switch (state_) {
        case ConnectionState::disconnected: restart_locked(now, out); break;
        case ConnectionState::reconnecting:
        case ConnectionState::error:
            if (fresh_budget) {
                policy_.reset();
                gave_up_ = false;
                probing_ = false;
            }
            if (socket_ == Socket::none) {  // waiting for the timer: go now
                state_ = ConnectionState::reconnecting;
                open_locked(now, out);
            }
            break;
        case ConnectionState::connecting:
        case ConnectionState::connected: break;  // already under way
    }
    return out;
}

Actions ClientStateMachine::close() {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ != Socket::none) out.push_back(Action::close_socket(close_normal, "client closed"));
    socket_ = Socket::none;
    heartbeat_.stop();
    reconnect_at_.reset();
    state_ = ConnectionState::disconnected;
    gave_up_ = false;
    probing_ = false;
    set_polling(false, out);
    return out;
}

Actions ClientStateMachine::send(std::string text) {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ == Socket::open) {
        out.push_back(Action::send_frame(std::move(text)));
        return out;
    }
    if (settings_.max_queued == 0) {
        ++dropped_;
        return out;
    }
    queue_.push_back(std::move(text));
    while (queue_.size() > settings_.max_queued) {
        queue_.pop_front();
        ++dropped_;
    }
    return out;
}

Actions ClientStateMachine::subscribe(const std::string& topic) {
    std::lock_guard lock{mutex_};
    Actions out;
    if (std::find(topics_.begin(), topics_.end(), topic) != topics_.end()) return out;
    topics_.push_back(topic);
    if (socket_ == Socket::open) out.push_back(Action::send_frame(subscribe_frame(topic)));
    return out;
}

Actions ClientStateMachine::unsubscribe(const std::string& topic) {
    std::lock_guard lock{mutex_};
    Actions out;
    const auto it = std::find(topics_.begin(), topics_.end(), topic);
    if (it == topics_.end()) return out;
    topics_.erase(it);
    if (socket_ == Socket::open) out.push_back(Action::send_frame(unsubscribe_frame(topic)));
    return out;
}

Actions ClientStateMachine::suspend() {
    std::lock_guard lock{mutex_};
    suspended_ = true;
    heartbeat_.pause();
    return {};
}

Actions ClientStateMachine::resume() {
    std::lock_guard lock{mutex_};
    Actions out;
    if (!suspended_) return out;
    suspended_ = false;
    const auto now = clock_->now();
    if (socket_ == Socket::open) heartbeat_.resume(now);  // the next tick pings at once
    else if (reconnect_at_) reconnect_at_ = now;          // reconnect at once
    tick_locked(now, out);
    return out;
}

// ---- socket events ------------------------------------------------------------------------

Actions ClientStateMachine::on_open() {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ != Socket::opening) {
        ++unexpected_;  // a socket we did not ask for, or a second open: ignore
        return out;
    }
    const auto now = clock_->now();
    socket_ = Socket::open;
    state_ = ConnectionState::connected;
    ready_ = !settings_.require_ready;
    if (ready_) policy_.reset();
    gave_up_ = false;
    probing_ = false;
    reconnect_at_.reset();
    if (settings_.heartbeat_enabled) {
        heartbeat_.start(now);
        if (suspended_) heartbeat_.pause();
    }
    set_polling(false, out);
    out.reserve(out.size() + topics_.size() + queue_.size());
    for (const auto& t : topics_) out.push_back(Action::send_frame(subscribe_frame(t)));
    while (!queue_.empty()) {
        out.push_back(Action::send_frame(std::move(queue_.front())));
        queue_.pop_front();
    }
    return out;
}

Actions ClientStateMachine::on_close(std::uint16_t code) {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ == Socket::none) {
        ++unexpected_;  // the socket was already given up (error, timeout, close())
        return out;
    }
    lost_locked(clock_->now(), false, code, out);
    return out;
}

Actions ClientStateMachine::on_error() {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ == Socket::none) {
        ++unexpected_;
        return out;
    }
    out.push_back(Action::close_socket(close_normal, "socket error"));
    lost_locked(clock_->now(), true, std::nullopt, out);
    return out;
}

Actions ClientStateMachine::abandon(std::uint16_t close_code, std::string reason) {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ == Socket::none) {
        ++unexpected_;
        return out;
    }
    out.push_back(Action::close_socket(close_code, std::move(reason)));
    lost_locked(clock_->now(), true, std::nullopt, out);
    return out;
}

Actions ClientStateMachine::ready() {
    std::lock_guard lock{mutex_};
    if (socket_ == Socket::open && !ready_) {
        ready_ = true;
        policy_.reset();
    }
    return {};
}

Actions ClientStateMachine::on_message(std::string_view text) {
    std::lock_guard lock{mutex_};
    Actions out;
    if (socket_ != Socket::open) {
        ++unexpected_;  // from a socket that is no longer ours
        return out;
    }
    if (settings_.heartbeat_enabled && is_pong(text)) {
        heartbeat_.on_pong(clock_->now());
        return out;
    }
    out.push_back(Action::deliver(std::string{text}));
    return out;
}

// ---- time -----------------------------------------------------------------------------------

Actions ClientStateMachine::tick(TimePoint now) {
    std::lock_guard lock{mutex_};
    Actions out;
    tick_locked(now, out);
    return out;
}

Actions ClientStateMachine::tick() { return tick(clock_->now()); }

// ---- observers ------------------------------------------------------------------------------

ConnectionState ClientStateMachine::state() const {
    std::lock_guard lock{mutex_};
    return state_;
}
bool ClientStateMachine::should_poll() const {
    std::lock_guard lock{mutex_};
    return polling_;
}
bool ClientStateMachine::suspended() const {
    std::lock_guard lock{mutex_};
    return suspended_;
}
bool ClientStateMachine::gave_up() const {
    std::lock_guard lock{mutex_};
    return gave_up_;
}
std::size_t ClientStateMachine::attempts() const {
    std::lock_guard lock{mutex_};
    return policy_.attempts();
}
std::optional<TimePoint> ClientStateMachine::reconnect_at() const {
    std::lock_guard lock{mutex_};
    return reconnect_at_;
}
ClientStatus ClientStateMachine::status() const {
    const auto now = clock_->now();
    std::lock_guard lock{mutex_};
    ClientStatus s;
    s.state = state_;
    s.attempt = policy_.attempts();
    s.max_attempts = settings_.reconnect.max_attempts;
    s.next_attempt_at = reconnect_at_;
    if (reconnect_at_) s.next_attempt_in = std::max(Duration{0}, std::chrono::duration_cast<Duration>(*reconnect_at_ - now));
    s.gave_up = gave_up_;
    s.probing = probing_;
    s.suspended = suspended_;
    s.polling = polling_;
    s.last_close_code = last_close_code_;
    return s;
}

std::optional<TimePoint> ClientStateMachine::next_deadline() const {
    std::lock_guard lock{mutex_};
    if (socket_ == Socket::opening) {
        if (settings_.open_timeout.count() > 0) return opening_since_ + settings_.open_timeout;
        return std::nullopt;
    }
    if (socket_ == Socket::open) return settings_.heartbeat_enabled ? heartbeat_.next_deadline() : std::nullopt;
    if (suspended_) return std::nullopt;
    return reconnect_at_;
}
std::optional<std::uint16_t> ClientStateMachine::last_close_code() const {
    std::lock_guard lock{mutex_};
    return last_close_code_;
}
std::size_t ClientStateMachine::queued() const {
    std::lock_guard lock{mutex_};
    return queue_.size();
}
std::uint64_t ClientStateMachine::dropped() const {
    std::lock_guard lock{mutex_};
    return dropped_;
}
std::uint64_t ClientStateMachine::unexpected_events() const {
    std::lock_guard lock{mutex_};
    return unexpected_;
}
std::vector<std::string> ClientStateMachine::subscriptions() const {
    std::lock_guard lock{mutex_};
    return topics_;
}

}  // namespace wsgate::client
