#pragma once
/** @file redis_endpoint.hpp Where a Redis server is, shared by RedisConnectionStore and RedisBus. */

#include <wsgate/clock.hpp>

#include <chrono>
#include <string>

namespace wsgate {

/// A Redis server address and connection settings; every field has a working default.
struct RedisEndpoint {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string password;  ///< sent with AUTH when non-empty
    int database = 0;      ///< SELECTed when non-zero
    Duration connect_timeout = std::chrono::milliseconds{1000};
    Duration command_timeout = std::chrono::milliseconds{2000};  ///< a reply slower than this fails the call
    /**
     * A Redis Cluster: `host:port` is any node of it (a seed), from which the slot map is read
     * (CLUSTER SLOTS); each command goes to the master serving its slot, and a MOVED reply (a
     * failover, a resharding) makes the next call read the map again. `database` must be 0.
     */
    bool cluster = false;
};

}  // namespace wsgate
