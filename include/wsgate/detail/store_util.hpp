#pragma once
// Helpers shared by the ConnectionStore implementations (no API promise).

#include <wsgate/audience.hpp>
#include <wsgate/connection.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::detail {

/// Separator of the flattened permission list kept next to each record for filtering.
inline constexpr char permission_separator = '\x1f';

inline std::string join_permissions(const std::vector<std::string>& perms) {
    std::string out;
    for (const auto& p : perms) {
        if (!out.empty()) out += permission_separator;
        out += p;
    }
    return out;
}

inline bool joined_has_permission(std::string_view joined, std::string_view wanted) noexcept {
    if (wanted.empty()) return true;
    while (true) {
        const auto pos = joined.find(permission_separator);
        const auto item = joined.substr(0, pos);
        if (item == wanted || item == "*") return true;
        if (pos == std::string_view::npos) return false;
        joined.remove_prefix(pos + 1);
    }
}

/// The audience's user ids, sorted and unique: a user named twice still gets each frame once.
inline std::vector<std::string> unique_users(const Audience& a) {
    std::vector<std::string> users = a.user_ids;
    std::sort(users.begin(), users.end());
    users.erase(std::unique(users.begin(), users.end()), users.end());
    return users;
}

/// Audience::admits() over the flattened columns a backend keeps for filtering.
inline bool admits(const Audience& a, std::string_view id, std::string_view user, std::string_view device,
                   std::string_view joined_permissions) noexcept {
    if (!a.excluded_connection.empty() && id == a.excluded_connection) return false;
    if (!a.excluded_device.empty() && device == a.excluded_device &&
        (a.excluded_device_user.empty() || user == a.excluded_device_user))
        return false;
    return joined_has_permission(joined_permissions, a.required_permission);
}

}  // namespace wsgate::detail
