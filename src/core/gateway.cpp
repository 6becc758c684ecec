// Compiles the definitions of gateway.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/gateway-inl.hpp>
