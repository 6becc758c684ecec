#pragma once
/** @file reconnect_policy.hpp Exponential backoff with jitter and an attempt cap, for reconnecting clients. */

#include <wsgate/clock.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

namespace wsgate::client {

/// Backoff settings; by default 1 s doubling to 30 s, plus 0–1 s jitter, 10 attempts.
struct ReconnectSettings {
    Duration initial_delay = std::chrono::seconds{1};  ///< delay before attempt 0 (without jitter)
    Duration max_delay = std::chrono::seconds{30};     ///< cap on the exponential part
    Duration max_jitter = std::chrono::seconds{1};     ///< jitter is uniform in [0, max_jitter]
    std::size_t max_attempts = 10;                     ///< attempts before giving up; 0 = never reconnect
};

/**
 * Source of random 64-bit values for the jitter. Inject a fixed one in tests; the default is a
 * `std::mt19937_64` seeded from `std::random_device` (jitter needs spread, not secrecy).
 */
using RandomSource = std::function<std::uint64_t()>;

/**
 * Reconnect backoff: attempt `n` (counted from 0 since the last success) waits
 * `min(max_delay, initial_delay · 2^n) + jitter`, jitter uniform in `[0, max_jitter]`; after
 * `max_attempts` attempts it gives up until reset().
 *
 * @code
 * wsgate::client::ReconnectPolicy p{{}, [] { return std::uint64_t{0}; }};
 * p.next_delay();  // 1000 ms, then 2000, 4000, 8000, 16000, 30000, 30000, ..., then nullopt
 * @endcode
 * @par Thread Safety Not thread-safe (owned by one ClientStateMachine or one thread).
 */
class ReconnectPolicy {
public:
    /// @throws std::invalid_argument if a duration is negative or `initial_delay` > `max_delay`.
    explicit ReconnectPolicy(ReconnectSettings settings = {}, RandomSource random = {});

    /// The delay before the next attempt, counting that attempt; nullopt once the cap is reached.
    [[nodiscard]] std::optional<Duration> next_delay();
    /// A jitter alone, uniform in `[0, max_jitter]` (spreads slow probes after the cap too).
    [[nodiscard]] Duration jitter();
    /// The delay of attempt `attempt` without jitter: `min(max_delay, initial_delay · 2^attempt)`.
    [[nodiscard]] static Duration base_delay(const ReconnectSettings& s, std::size_t attempt) noexcept;
    /// Attempts handed out since construction or the last reset().
    [[nodiscard]] std::size_t attempts() const noexcept { return attempts_; }
    /// True once `max_attempts` attempts were handed out.
    [[nodiscard]] bool exhausted() const noexcept { return attempts_ >= settings_.max_attempts; }
    /// Back to attempt 0 (call on a successful connection).
    void reset() noexcept { attempts_ = 0; }
    [[nodiscard]] const ReconnectSettings& settings() const noexcept { return settings_; }

private:
    ReconnectSettings settings_;
    RandomSource random_;
    std::size_t attempts_ = 0;
};

}  // namespace wsgate::client
