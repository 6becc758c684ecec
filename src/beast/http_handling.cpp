// The server's HTTP request handling, kept free of sockets so that the fuzzer drives it too.
#include "http_handling.hpp"

#include <wsgate/authorizer.hpp>
#include <wsgate/detail/text.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace wsgate::beast::detail {

namespace {

using wsgate::detail::trim;

std::string_view mime_type(std::string_view path) {
    auto dot = path.rfind('.');
    auto ext = dot == std::string_view::npos ? std::string{} : wsgate::detail::to_lower(path.substr(dot));
    if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
    if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
    if (ext == ".css") return "text/css; charset=utf-8";
    if (ext == ".json") return "application/json";
    if (ext == ".svg") return "image/svg+xml";
    if (ext == ".png") return "image/png";
    if (ext == ".ico") return "image/x-icon";
    if (ext == ".txt") return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

}  // namespace

void limit_parser(Parser& p, const ServerSettings& s) {
    p.body_limit(s.max_http_body_bytes);
    // Beast takes a 32-bit header limit.
    p.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(s.max_http_header_bytes, 0xffffffffu)));
}

int status_for_read_error(const boost::system::error_code& ec) noexcept {
    if (!ec) return 0;
    if (ec == http::error::body_limit) return 413;
    if (ec == http::error::header_limit) return 431;
    if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == http::error::need_more)
        return 0;
    if (ec.category() == make_error_code(http::error::bad_method).category()) return 400;
    return 0;  // socket errors and timeouts: nobody to answer
}

std::string json_error(int status, std::string_view reason) {
    nlohmann::json j{{"type", "error"}, {"status", status}, {"error", std::string{reason}}};
    return j.dump();
}

void split_target(std::string_view target, std::string& path, std::map<std::string, std::string>& query) {
    auto q = target.find('?');
    path = percent_decode(target.substr(0, q), false);
    if (q != std::string_view::npos) query = parse_query_string(target.substr(q + 1));
}

std::map<std::string, std::string> lower_headers(const Request& req) {
    std::map<std::string, std::string> out;
    for (const auto& f : req) {
        auto name = wsgate::detail::to_lower(std::string_view{f.name_string().data(), f.name_string().size()});
        std::string value{f.value()};
        auto [it, fresh] = out.emplace(name, value);
        if (!fresh) it->second += ", " + value;  // RFC 9110 §5.3: repeated fields join with commas
    }
    return out;
}

std::vector<std::string> split_list(std::string_view v) {
    std::vector<std::string> out;
    while (!v.empty()) {
        auto comma = v.find(',');
        auto item = trim(v.substr(0, comma));
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    return out;
}

HttpRequest to_http_request(Request& req, std::string source_ip) {
    HttpRequest hr;
    hr.method = std::string{req.method_string()};
    hr.target = std::string{req.target()};
    split_target(hr.target, hr.path, hr.query);
    hr.headers = lower_headers(req);
    hr.body = std::move(req.body());
    hr.source_ip = std::move(source_ip);
    return hr;
}

std::optional<std::string> static_file_path(std::string_view root, std::string_view url_path) {
    if (root.empty() || url_path.empty() || url_path.front() != '/') return std::nullopt;
    std::string rel{url_path};
    if (rel.back() == '/') rel += "index.html";
    std::string_view rest{rel};
    rest.remove_prefix(1);
    while (true) {
        auto slash = rest.find('/');
        auto seg = rest.substr(0, slash);
        // `.` and `..` would leave or alias the root; other dot names are hidden files (.git, .env).
        if (seg.empty() || seg.front() == '.') return std::nullopt;
        if (seg.find('\0') != std::string_view::npos || seg.find('\\') != std::string_view::npos) return std::nullopt;
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    return std::string{root} + rel;
}

HttpResponse route_request(const Routes& routes, const ServerSettings& s, const HttpRequest& req) {
    auto it = routes.find(req.method + " " + req.path);
    if (it == routes.end() && req.method == "HEAD") it = routes.find("GET " + req.path);
    if (it != routes.end()) {
        try {
            return it->second(req);
        } catch (...) {
            return HttpResponse::json(500, json_error(500, "internal_error"));
        }
    }
    bool path_known = std::any_of(routes.begin(), routes.end(), [&](const auto& kv) {
        return std::string_view{kv.first}.substr(kv.first.find(' ') + 1) == req.path;
    });
    if (path_known) return HttpResponse::json(405, json_error(405, "method_not_allowed"));
    if ((req.method == "GET" || req.method == "HEAD") && !s.static_root.empty()) {
        if (auto file = static_file_path(s.static_root, req.path)) {
            std::error_code ec;
            // A directory opens as a stream on Linux; only regular files are served.
            if (std::filesystem::is_regular_file(*file, ec)) {
                std::ifstream f(*file, std::ios::binary);
                if (f) {
                    std::ostringstream ss;
                    ss << f.rdbuf();
                    HttpResponse r;
                    r.content_type = std::string{mime_type(*file)};
                    r.body = std::move(ss).str();
                    return r;
                }
            }
        }
    }
    return HttpResponse::json(404, json_error(404, "not_found"));
}

Response make_response(const HttpResponse& r, const ServerSettings& s, unsigned version, bool keep_alive,
                       bool head) {
    // Beast refuses status codes beyond three digits, and a body on 204/304; a handler's
    // informational or out-of-range status is a bug.
    const int status = r.status >= 200 && r.status <= 599 ? r.status : 500;
    const bool no_content = status == 204 || status == 304;
    Response res{static_cast<http::status>(status), version};
    res.set(http::field::server, s.server_name);
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive);
    if (no_content) {
        // no body and no Content-Length (RFC 9110 §8.6)
    } else if (head) {
        // RFC 9110 §9.3.2: the GET response's headers, no content.
        res.content_length(r.body.size());
    } else {
        res.body() = r.body;
        res.prepare_payload();
    }
    return res;
}

}  // namespace wsgate::beast::detail
