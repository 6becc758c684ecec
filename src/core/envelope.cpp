// Compiles the definitions of envelope.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/envelope-inl.hpp>
