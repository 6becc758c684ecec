// Compiles the definitions of authorizer.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/authorizer-inl.hpp>
