// Compiles the definitions of metrics.hpp into wsgate::wsgate (see wsgate/detail/config.hpp).
#include <wsgate/impl/metrics-inl.hpp>
