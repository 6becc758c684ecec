// The compiled core, wsgate::wsgate: every definition from wsgate/impl/*-inl.hpp, in one
// translation unit (the JSON library is parsed once, not once per file). Without
// WSGATE_HEADER_ONLY, WSGATE_INLINE is empty and these are ordinary out-of-line definitions.
#ifdef WSGATE_HEADER_ONLY
#error "src/core/wsgate.cpp builds the compiled library; a header-only build compiles no core source"
#endif

#include <wsgate/impl/audience-inl.hpp>
#include <wsgate/impl/authorizer-inl.hpp>
#include <wsgate/impl/bus-inl.hpp>
#include <wsgate/impl/clock-inl.hpp>
#include <wsgate/impl/connection-inl.hpp>
#include <wsgate/impl/connection_store-inl.hpp>
#include <wsgate/impl/envelope-inl.hpp>
#include <wsgate/impl/error-inl.hpp>
#include <wsgate/impl/event_router-inl.hpp>
#include <wsgate/impl/gateway-inl.hpp>
#include <wsgate/impl/memory_store-inl.hpp>
#include <wsgate/impl/memory_transport-inl.hpp>
#include <wsgate/impl/metrics-inl.hpp>
#include <wsgate/impl/random-inl.hpp>
#include <wsgate/impl/transport-inl.hpp>
