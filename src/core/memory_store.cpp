// Compiles the definitions of memory_store.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/memory_store-inl.hpp>
