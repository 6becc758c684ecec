#pragma once
/**
 * @file client.hpp Umbrella header: the transport-agnostic client logic (backoff, heartbeat,
 * state machine, stream positions, typed message dispatch).
 */

#include <wsgate/client/client_state_machine.hpp>
#include <wsgate/client/heartbeat.hpp>
#include <wsgate/client/message_dispatcher.hpp>
#include <wsgate/client/reconnect_policy.hpp>
#include <wsgate/client/stream_tracker.hpp>
