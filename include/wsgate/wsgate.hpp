#pragma once
/** @file wsgate.hpp Umbrella header: the core (no optional backend). */

#include <wsgate/audience.hpp>
#include <wsgate/authorizer.hpp>
#include <wsgate/bus.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>
#include <wsgate/connection_store.hpp>
#include <wsgate/end_reason.hpp>
#include <wsgate/envelope.hpp>
#include <wsgate/error.hpp>
#include <wsgate/event_router.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/metrics.hpp>
#include <wsgate/random.hpp>
#include <wsgate/transport.hpp>
#include <wsgate/version.hpp>
