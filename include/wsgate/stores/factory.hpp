#pragma once
/**
 * @file factory.hpp Stores and buses from a one-line spec (`wsgate::stores`), for command lines
 * and configuration files.
 *
 * | spec | result |
 * |---|---|
 * | `memory` | InMemoryConnectionStore |
 * | `sqlite:PATH` | SqliteConnectionStore on PATH (needs `wsgate::sqlite`) |
 * | `redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P&pool=N&timeout_ms=T&retry_ms=R&cluster=1]` | RedisConnectionStore (needs `wsgate::redis`) |
 * | `dynamodb://TABLE[?endpoint=URL&region=R&create=1&timeout_ms=T&insecure=1]` | DynamoDbConnectionStore (needs `wsgate::dynamodb`) |
 *
 * Redis parameters: `prefix` (key prefix), `pool` (connections, 1–256), `timeout_ms` (connect and
 * command timeout, `RedisEndpoint::connect_timeout` and `command_timeout`), `retry_ms` (how long calls fail fast after
 * Redis was found unreachable, `RedisStoreSettings::retry_after`; 0 retries every call), `cluster=1`
 * (HOST:PORT is a node of a Redis Cluster, `RedisEndpoint::cluster`; no `/DB`; a `prefix` without
 * a `{hash tag}` is wrapped in braces so every key shares one slot).
 *
 * DynamoDB parameters: `endpoint` (e.g. `http://127.0.0.1:8000` for DynamoDB Local or dynalite;
 * plain or percent-encoded; default `https://dynamodb.<region>.amazonaws.com`), `region` (default
 * AWS_REGION, then AWS_DEFAULT_REGION, then `us-east-1`), `create=1` (create the table with
 * create_dynamodb_table() first; off by default), `timeout_ms` (connect and request timeout of the
 * HTTP client), `insecure=1` (allow a plain `http://` endpoint on a host that is not loopback,
 * DynamoDbStoreSettings::allow_plain_http). Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN, read for every request. Unknown parameters are refused.
 *
 * Bus specs: `none` (or empty) gives no bus;
 * `redis://[:PASSWORD@]HOST[:PORT][/DB][?channel=C&timeout_ms=T&channels=routed|single&cluster=1]`
 * gives a RedisBus. `channels=single` (RedisBusSettings::per_topic_channels false) sends every
 * publish on the one channel, as 0.1 nodes do: for a rolling upgrade, where every node must agree.
 * `cluster=1`: HOST:PORT is a node of a Redis Cluster; each route's channel goes to its shard.
 */

#include <wsgate/bus.hpp>
#include <wsgate/connection_store.hpp>

#include <memory>
#include <string_view>

namespace wsgate {

/**
 * The ConnectionStore a spec names (see the table above).
 * @throws std::invalid_argument on a malformed spec or a backend not compiled in.
 * @throws StoreError if the backend cannot be opened (SQLite; DynamoDB with `create=1`; Redis and
 * DynamoDB otherwise connect lazily).
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::shared_ptr<ConnectionStore> make_store(std::string_view spec);

/**
 * The Bus a spec names: nullptr for `none` or an empty spec. `channel`, when non-empty, overrides
 * the spec's `channel` parameter (default `wsgate:bus`).
 * @throws std::invalid_argument on a malformed spec or a backend not compiled in.
 * @par Thread Safety Safe.
 */
[[nodiscard]] std::shared_ptr<Bus> make_bus(std::string_view spec, std::string_view channel = {});

/// True if specs with this scheme (`memory`, `sqlite`, `redis`, `dynamodb`) can be built by this build.
[[nodiscard]] bool store_backend_available(std::string_view scheme) noexcept;

}  // namespace wsgate
