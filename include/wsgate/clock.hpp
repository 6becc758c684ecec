#pragma once
/** @file clock.hpp Injected time source: every TTL, rate limit and token check reads it. */

#include <wsgate/detail/config.hpp>

#include <atomic>
#include <chrono>
#include <string>

namespace wsgate {

/// Wall-clock time point used throughout wsgate (UTC, system epoch).
using TimePoint = std::chrono::system_clock::time_point;
/// Durations are kept in milliseconds, the resolution of every wire timestamp.
using Duration = std::chrono::milliseconds;

/**
 * Source of the current time.
 *
 * @par Thread Safety
 * Implementations must be safe to call from any thread.
 */
class Clock {
public:
    virtual ~Clock() = default;
    /// The current time.
    [[nodiscard]] virtual TimePoint now() const noexcept = 0;
};

/** The real clock (`std::chrono::system_clock`). @par Thread Safety Safe. */
class SystemClock final : public Clock {
public:
    [[nodiscard]] TimePoint now() const noexcept override { return std::chrono::system_clock::now(); }
};

/**
 * A clock that moves only when told; makes TTL, rate-limit and token tests deterministic.
 *
 * @code
 * wsgate::ManualClock clock{wsgate::from_unix_ms(1'700'000'000'000)};
 * clock.advance(std::chrono::hours{1});
 * @endcode
 * @par Thread Safety Safe (atomic).
 */
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint{std::chrono::seconds{1'700'000'000}}) noexcept
        : ticks_(start.time_since_epoch().count()) {}
    [[nodiscard]] TimePoint now() const noexcept override {
        return TimePoint{TimePoint::duration{ticks_.load(std::memory_order_acquire)}};
    }
    /// Moves the clock to `t` (may go backwards, to test clock skew).
    void set(TimePoint t) noexcept { ticks_.store(t.time_since_epoch().count(), std::memory_order_release); }
    /// Moves the clock forward by `d`.
    template <class Rep, class Period>
    void advance(std::chrono::duration<Rep, Period> d) noexcept {
        ticks_.fetch_add(std::chrono::duration_cast<TimePoint::duration>(d).count(), std::memory_order_acq_rel);
    }

private:
    std::atomic<TimePoint::duration::rep> ticks_;
};

/// Milliseconds since the Unix epoch.
[[nodiscard]] inline std::int64_t to_unix_ms(TimePoint t) noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
/// Seconds since the Unix epoch (truncated), as JWT `exp`/`iat` use.
[[nodiscard]] inline std::int64_t to_unix_seconds(TimePoint t) noexcept {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
/// The time point `ms` milliseconds after the Unix epoch.
[[nodiscard]] inline TimePoint from_unix_ms(std::int64_t ms) noexcept {
    return TimePoint{std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds{ms})};
}
/// The time point `s` seconds after the Unix epoch.
[[nodiscard]] inline TimePoint from_unix_seconds(std::int64_t s) noexcept {
    return TimePoint{std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds{s})};
}

/// ISO-8601 UTC with milliseconds, e.g. `2024-01-01T12:00:00.000Z`.
[[nodiscard]] std::string format_iso8601(TimePoint t);

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/clock-inl.hpp>
#endif
