// Compiles the definitions of connection_store.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/connection_store-inl.hpp>
