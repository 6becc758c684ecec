// Compiles the definitions of memory_transport.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/memory_transport-inl.hpp>
