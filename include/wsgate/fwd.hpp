#pragma once
/** @file fwd.hpp Forward declarations of wsgate's main types. */

namespace wsgate {
class Clock;
class ManualClock;
class SystemClock;
struct Principal;
struct ConnectionRecord;
class Envelope;
struct Audience;
struct BroadcastReport;
class ConnectionStore;
class InMemoryConnectionStore;
class Transport;
class InMemoryTransport;
class Authorizer;
struct AuthDecision;
struct ConnectRequest;
class EventRouter;
class MessageContext;
class Bus;
class Gateway;
struct GatewaySettings;
struct Metrics;
}  // namespace wsgate
