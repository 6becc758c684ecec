// Compiles the definitions of clock.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/clock-inl.hpp>
