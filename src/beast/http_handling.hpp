#pragma once
// The server's HTTP request handling without sockets: parser limits, read errors to statuses,
// conversion to HttpRequest, routing, static-file path resolution and the response. Server uses
// it on its sockets; the HTTP fuzzer drives the same functions with bytes. Not installed.
#include <wsgate/beast/server.hpp>

#include <boost/beast/http.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace wsgate::beast::detail {

namespace http = boost::beast::http;

using Request = http::request<http::string_body>;
using Parser = http::request_parser<http::string_body>;
using Response = http::response<http::string_body>;
using Routes = std::map<std::string, HttpHandler>;  // "METHOD path"

/// Applies the server's body and header limits to a fresh parser.
void limit_parser(Parser& p, const ServerSettings& s);

/// The status a failed request read is answered with: 413 (body), 431 (header fields), 400
/// (anything else that did not parse); 0 when the peer went away or timed out (no answer).
int status_for_read_error(const boost::system::error_code& ec) noexcept;

/// `{"type":"error","status":…,"error":…}`.
std::string json_error(int status, std::string_view reason);

/// Percent-decoded path and parsed query of a request target.
void split_target(std::string_view target, std::string& path, std::map<std::string, std::string>& query);
/// Header fields with lower-case names; repeated fields joined with ", ".
std::map<std::string, std::string> lower_headers(const Request& req);
/// The entries of a comma-separated header value, trimmed, empty ones dropped.
std::vector<std::string> split_list(std::string_view v);

/// A parsed request as handlers see it (the body is moved out of `req`).
HttpRequest to_http_request(Request& req, std::string source_ip);

/**
 * The file under `root` that `url_path` names, or nullopt. Every segment must be a plain name:
 * no empty, `.`, `..` or other dot-leading segment (no traversal, no hidden files), no NUL or
 * backslash. A path ending in `/` names its `index.html`. Does not touch the file system.
 */
std::optional<std::string> static_file_path(std::string_view root, std::string_view url_path);

/// Answers a plain (non-upgrade) request: a route, else 405 for a known path, else a static
/// file, else 404. A handler that throws gives 500. HEAD without its own route uses GET's.
HttpResponse route_request(const Routes& routes, const ServerSettings& s, const HttpRequest& req);

/// The wire response; for HEAD, the headers of the full response with no body.
Response make_response(const HttpResponse& r, const ServerSettings& s, unsigned version, bool keep_alive,
                       bool head);

}  // namespace wsgate::beast::detail
