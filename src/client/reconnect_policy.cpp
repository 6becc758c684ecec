// Exponential backoff with jitter and an attempt cap.
#include <wsgate/client/reconnect_policy.hpp>

#include <memory>
#include <random>
#include <stdexcept>

namespace wsgate::client {

ReconnectPolicy::ReconnectPolicy(ReconnectSettings settings, RandomSource random)
    : settings_(settings), random_(std::move(random)) {
    if (settings_.initial_delay.count() < 0 || settings_.max_delay.count() < 0 || settings_.max_jitter.count() < 0)
        throw std::invalid_argument("wsgate::client::ReconnectPolicy: delays must not be negative");
    if (settings_.initial_delay > settings_.max_delay)
        throw std::invalid_argument("wsgate::client::ReconnectPolicy: initial_delay exceeds max_delay");
    if (!random_) {
        auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
        random_ = [engine] { return (*engine)(); };
    }
}

Duration ReconnectPolicy::base_delay(const ReconnectSettings& s, std::size_t attempt) noexcept {
    auto d = s.initial_delay.count();
    const auto cap = s.max_delay.count();
    if (d <= 0) return Duration{0};
    // Doubling stops at the cap, so this never overflows and runs at most ~63 times.
    for (std::size_t i = 0; i < attempt && d < cap; ++i) d *= 2;
    return Duration{d < cap ? d : cap};
}

std::optional<Duration> ReconnectPolicy::next_delay() {
    if (exhausted()) return std::nullopt;
    const auto base = base_delay(settings_, attempts_);
    ++attempts_;
    return base + jitter();
}

Duration ReconnectPolicy::jitter() {
    const auto span = static_cast<std::uint64_t>(settings_.max_jitter.count());
    const auto j = span == 0 ? std::uint64_t{0} : random_() % (span + 1);
    return Duration{static_cast<Duration::rep>(j)};
}

}  // namespace wsgate::client
