#pragma once
// Definitions for metrics.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/metrics.hpp>
#include <wsgate/detail/config.hpp>

#include <sstream>

namespace wsgate {

WSGATE_INLINE std::string Metrics::prometheus_text() const {
    std::ostringstream out;
    auto counter = [&](const char* name, const char* help, const Counter& c) {
        out << "# HELP wsgate_" << name << ' ' << help << "\n# TYPE wsgate_" << name << " counter\nwsgate_"
            << name << ' ' << c.load(std::memory_order_relaxed) << '\n';
    };
    out << "# HELP wsgate_active_connections Connections this node holds now.\n"
           "# TYPE wsgate_active_connections gauge\nwsgate_active_connections "
        << active_connections.load(std::memory_order_relaxed) << '\n';
    counter("connects_total", "Accepted connections.", connects);
    counter("denied_connects_total", "Refused connections (auth, limits).", denied_connects);
    counter("disconnects_total", "Connections that ended, for any reason.", disconnects);
    counter("messages_in_total", "Client messages received.", messages_in);
    counter("messages_out_total", "Frames queued to clients (replies and deliveries).", messages_out);
    counter("bytes_in_total", "Bytes received from clients.", bytes_in);
    counter("bytes_out_total", "Bytes queued to clients.", bytes_out);
    counter("broadcasts_total", "Publishes fanned out on this node.", broadcasts);
    counter("deliveries_total", "Frames delivered by fan-out.", deliveries);
    counter("gone_cleanups_total", "Connections removed because a send reported Gone (410).", gone_cleanups);
    counter("replayed_total", "Publications replayed to subscribers that recovered a topic's stream.", replayed);
    counter("recoveries_total", "Subscribes that resumed a topic's stream without a gap.", recoveries);
    counter("recoveries_failed_total", "Subscribes that asked to resume a stream and were told to resync.",
            recoveries_failed);
    counter("send_failures_total", "Sends that failed for another reason.", send_failures);
    counter("backpressured_total", "Frames refused because a connection's queue was full.", backpressured);
    counter("rate_limited_total", "Messages refused by the rate limit.", rate_limited);
    counter("oversize_total", "Messages refused for their size.", oversize);
    counter("bad_messages_total", "Malformed or invalid client messages.", bad_messages);
    counter("handler_errors_total", "Route handlers that threw.", handler_errors);
    counter("store_errors_total", "ConnectionStore failures caught.", store_errors);
    counter("bus_errors_total", "Bus publishes that failed (a gap for other nodes).", bus_errors);
    counter("bus_received_total", "Messages received from other nodes.", bus_received);
    counter("bus_listen_failures_total",
            "Bus subscriptions for a topic or user with new local members that were not confirmed in time.",
            bus_listen_failures);
    counter("degraded_publishes_total",
            "Publishes that may have missed part of their audience (store, bus or history unavailable).",
            degraded_publishes);
    counter("local_fallbacks_total", "Deliveries resolved from this node's own index because the store, as the index, failed.",
            local_fallbacks);
    counter("reregistrations_total", "Times this node registered its connections again after the store lost them.",
            reregistrations);
    counter("reregistered_connections_total", "Connections registered again after the store lost them.",
            reregistered);
    out << "# HELP wsgate_connections_ended_total Connections ended, by reason.\n"
           "# TYPE wsgate_connections_ended_total counter\n";
    for (const auto& row : end_reasons)
        out << "wsgate_connections_ended_total{reason=\"" << row.name << "\"} "
            << ended_total(row.reason).load(std::memory_order_relaxed) << '\n';
    return out.str();
}

}  // namespace wsgate
