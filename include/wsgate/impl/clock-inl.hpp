#pragma once
// Definitions for clock.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/clock.hpp>
#include <wsgate/detail/config.hpp>

#include <array>
#include <cstdio>
#include <ctime>

namespace wsgate {

WSGATE_INLINE std::string format_iso8601(TimePoint t) {
    const auto ms_total = to_unix_ms(t);
    auto secs = static_cast<std::time_t>(ms_total / 1000);
    auto ms = static_cast<int>(ms_total % 1000);
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::array<char, 96> buf{};
    std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf.data();
}

}  // namespace wsgate
