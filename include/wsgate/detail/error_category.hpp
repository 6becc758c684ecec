#pragma once
// One std::error_category implementation for every wsgate error enum (no API promise).

#include <string>
#include <system_error>

namespace wsgate::detail {

/**
 * The error category of `Enum`: named by the string literal given to error_category_of(), its
 * messages are `Describe(static_cast<Enum>(ev))` (a function returning something a std::string
 * can be made from). Describe must answer every value, including ones outside the enum.
 */
template <class Enum, auto Describe>
class enum_error_category final : public std::error_category {
public:
    explicit constexpr enum_error_category(const char* name) noexcept : name_(name) {}
    [[nodiscard]] const char* name() const noexcept override { return name_; }
    [[nodiscard]] std::string message(int ev) const override { return std::string(Describe(static_cast<Enum>(ev))); }

private:
    const char* name_;
};

/**
 * The one instance of the category for `Enum`; `name` (a string literal) is read by the first
 * call only. Compare categories by address: each (Enum, Describe) pair has exactly one.
 * @code
 * const std::error_category& jwt_category() noexcept {
 *     return detail::error_category_of<jwt_errc, &describe_jwt>("wsgate.jwt");
 * }
 * @endcode
 */
template <class Enum, auto Describe>
[[nodiscard]] const std::error_category& error_category_of(const char* name) noexcept {
    static const enum_error_category<Enum, Describe> category{name};
    return category;
}

}  // namespace wsgate::detail
