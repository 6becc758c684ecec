#pragma once
// Definitions for authorizer.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/authorizer.hpp>
#include <wsgate/detail/config.hpp>

namespace wsgate {

// ---- query strings ----------------------------------------------------------------------

WSGATE_INLINE std::string percent_decode(std::string_view s, bool plus_is_space) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%' && i + 2 < s.size()) {
            const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += (plus_is_space && c == '+') ? ' ' : c;
    }
    return out;
}

WSGATE_INLINE std::map<std::string, std::string> parse_query_string(std::string_view qs) {
    std::map<std::string, std::string> out;
    if (!qs.empty() && qs.front() == '?') qs.remove_prefix(1);
    while (!qs.empty()) {
        const auto amp = qs.find('&');
        auto part = qs.substr(0, amp);
        qs = amp == std::string_view::npos ? std::string_view{} : qs.substr(amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        auto key = percent_decode(part.substr(0, eq));
        auto value = eq == std::string_view::npos ? std::string{} : percent_decode(part.substr(eq + 1));
        out[std::move(key)] = std::move(value);
    }
    return out;
}

}  // namespace wsgate
