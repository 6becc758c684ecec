// Compiles the definitions of connection.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/connection-inl.hpp>
