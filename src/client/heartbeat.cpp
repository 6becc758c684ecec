// Application-level ping/pong liveness check.
#include <wsgate/client/heartbeat.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsgate::client {

Heartbeat::Heartbeat(HeartbeatSettings settings) : settings_(settings) {
    if (settings_.interval.count() <= 0 || settings_.timeout.count() <= 0)
        throw std::invalid_argument("wsgate::client::Heartbeat: interval and timeout must be positive");
}

void Heartbeat::start(TimePoint now) noexcept {
    running_ = true;
    paused_ = false;
    next_ping_ = now + settings_.interval;
    pong_deadline_.reset();
}

void Heartbeat::stop() noexcept {
    running_ = false;
    paused_ = false;
    pong_deadline_.reset();
}

void Heartbeat::pause() noexcept {
    if (running_) paused_ = true;
}

void Heartbeat::resume(TimePoint now) noexcept {
    if (!running_ || !paused_) return;
    paused_ = false;
    // A pong that was pending when we paused is void: the ping goes out again now.
    pong_deadline_.reset();
    next_ping_ = now;
}

Heartbeat::Due Heartbeat::tick(TimePoint now) noexcept {
    if (!running_ || paused_) return Due::nothing;
    if (pong_deadline_) {
        if (now >= *pong_deadline_) {
            running_ = false;
            pong_deadline_.reset();
            return Due::timed_out;
        }
        return Due::nothing;
    }
    if (now < next_ping_) return Due::nothing;
    ping_sent_ = now;
    pong_deadline_ = now + settings_.timeout;
    next_ping_ = now + settings_.interval;
    return Due::send_ping;
}

void Heartbeat::on_pong(TimePoint now) noexcept {
    if (!running_ || !pong_deadline_) return;
    pong_deadline_.reset();
    last_rtt_ = std::max(Duration{0}, std::chrono::duration_cast<Duration>(now - ping_sent_));
}

std::optional<TimePoint> Heartbeat::next_deadline() const noexcept {
    if (!running_ || paused_) return std::nullopt;
    if (pong_deadline_) return pong_deadline_;
    return next_ping_;
}

}  // namespace wsgate::client
