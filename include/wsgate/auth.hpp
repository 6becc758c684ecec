#pragma once
/** @file auth.hpp Umbrella header: JWT verification/signing, JWKS, public tokens, authorizers. */

#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>
#include <wsgate/auth/jwt_error.hpp>
#include <wsgate/auth/lambda_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/auth/token_authorizer.hpp>

// The deprecated DualTokenAuthorizer / DualTokenSettings names (until 0.3).
#include <wsgate/auth/dual_token_authorizer.hpp>
