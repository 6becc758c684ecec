#pragma once
/**
 * @file dual_token_authorizer.hpp Deprecated: include <wsgate/auth/token_authorizer.hpp>.
 * The old names of TokenAuthorizer and TokenAuthorizerSettings, kept for 0.2 and removed in 0.3.
 */

#include <wsgate/auth/token_authorizer.hpp>

namespace wsgate {

using DualTokenAuthorizer [[deprecated("use TokenAuthorizer")]] = TokenAuthorizer;
using DualTokenSettings [[deprecated("use TokenAuthorizerSettings")]] = TokenAuthorizerSettings;

}  // namespace wsgate
