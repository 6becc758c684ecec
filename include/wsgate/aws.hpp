#pragma once
/** @file aws.hpp Umbrella header of `wsgate::aws`: API Gateway WebSocket APIs and DynamoDB streams. */

#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/aws/authorizer_event.hpp>
#include <wsgate/aws/connections_transport.hpp>
#include <wsgate/aws/dynamodb_stream.hpp>
#include <wsgate/aws/error.hpp>
#include <wsgate/aws/http_client.hpp>
#include <wsgate/aws/lambda_runtime.hpp>
#include <wsgate/aws/sigv4.hpp>
