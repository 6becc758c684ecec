#pragma once
/** @file metrics.hpp Monitoring counters, exportable as Prometheus text. */

#include <wsgate/detail/config.hpp>

#include <wsgate/end_reason.hpp>

#include <array>
#include <atomic>
#include <cstddef>
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
    /// Routed-bus listens (a topic or user this node gained a member of) the bus could not
    /// confirm in time; local delivery goes on, and the bus subscribes once it can.
    Counter bus_listen_failures{0};
    Counter degraded_publishes{0};  ///< publishes that may have missed part of their audience
    /// Deliveries resolved from this node's own index because the store failed where it is the
    /// index (`local_delivery_only` false). With a shared store every delivery uses the node's
    /// index anyway, so an outage costs no local delivery and this stays 0.
    Counter local_fallbacks{0};
    Counter reregistrations{0};     ///< times this node registered its connections again
    Counter reregistered{0};        ///< connections registered again, summed
    Counter replayed{0};         ///< publications replayed to recovering subscribers
    Counter recoveries{0};       ///< subscribes that resumed a stream without a gap
    Counter recoveries_failed{0};  ///< subscribes that asked to resume and were told to resync
    /// Connections ended, by reason: `ended[static_cast<std::size_t>(r)]` (see ended_total()).
    std::array<Counter, end_reason_count> ended{};
    std::atomic<std::int64_t> active_connections{0};  ///< connections this node holds now

    /// The counter of connections that ended for `r`.
    [[nodiscard]] Counter& ended_total(EndReason r) noexcept { return ended[index_of(r)]; }
    [[nodiscard]] const Counter& ended_total(EndReason r) const noexcept { return ended[index_of(r)]; }

    /// Prometheus text exposition (version 0.0.4), every name prefixed `wsgate_`.
    [[nodiscard]] std::string prometheus_text() const;

private:
    // A value outside the enum counts with the first reason rather than past the array.
    static constexpr std::size_t index_of(EndReason r) noexcept {
        const auto i = static_cast<std::size_t>(r);
        return i < end_reason_count ? i : 0;
    }
};

inline void bump(Metrics::Counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/metrics-inl.hpp>
#endif
