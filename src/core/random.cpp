// Compiles the definitions of random.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/random-inl.hpp>
