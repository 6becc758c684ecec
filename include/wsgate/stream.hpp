#pragma once
/** @file stream.hpp Umbrella header of `wsgate::stream`: batching database changes into push messages. */

#include <wsgate/stream/change_stream.hpp>
