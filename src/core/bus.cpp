// Compiles the definitions of bus.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/bus-inl.hpp>
