// Compiles the definitions of event_router.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/event_router-inl.hpp>
