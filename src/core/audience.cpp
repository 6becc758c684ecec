// Compiles the definitions of audience.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/audience-inl.hpp>
