#pragma once
/** @file metrics.hpp Monitoring counters, exportable as Prometheus text. */

#include <atomic>
#include <cstdint>
#include <string>

namespace wsgate {

/**
 * Counters for monitoring. Each is a relaxed atomic: cheap to bump from any thread.
 * @par Thread Safety Safe.
 */
struct Metrics {
    using Counter = std::atomic<std::uint64_t>;

    Counter connects{0};
    Counter denied_connects{0};
    Counter disconnects{0};
    Counter messages_in{0};
    Counter messages_out{0};
    Counter bytes_in{0};
    Counter bytes_out{0};
    Counter broadcasts{0};
    Counter deliveries{0};
    Counter gone_cleanups{0};
    Counter send_failures{0};
    Counter backpressured{0};
    Counter rate_limited{0};
    Counter oversize{0};
    Counter bad_messages{0};
    Counter handler_errors{0};
    Counter store_errors{0};
    Counter bus_errors{0};       ///< bus publishes that failed (a gap other nodes did not see)
    Counter bus_received{0};
    // reasons a connection ended (the reaper)
    Counter ended_client_closed{0};
    Counter ended_gone{0};
    Counter ended_ttl{0};
    Counter ended_token_expired{0};
    Counter ended_idle{0};
    Counter ended_max_age{0};
    Counter ended_heartbeat{0};
    Counter ended_backpressure{0};
    Counter ended_policy{0};
    Counter ended_shutdown{0};
    Counter ended_kicked{0};
    std::atomic<std::int64_t> active_connections{0};  ///< connections this node holds now

    /// Prometheus text exposition (version 0.0.4), every name prefixed `wsgate_`.
    [[nodiscard]] std::string prometheus_text() const;
};

inline void bump(Metrics::Counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace wsgate
