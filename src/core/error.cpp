// Compiles the definitions of error.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/error-inl.hpp>
