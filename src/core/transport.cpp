// Compiles the definitions of transport.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/transport-inl.hpp>
