#pragma once
/** @file auth.hpp Umbrella header: JWT verification/signing, JWKS, public tokens, authorizers. */

#include <wsgate/auth/dual_token_authorizer.hpp>
#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>
#include <wsgate/auth/jwt_error.hpp>
#include <wsgate/auth/lambda_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
