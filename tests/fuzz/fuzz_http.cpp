// Fuzzes the Beast server's HTTP request handling without sockets: arbitrary bytes go through the
// server's parser (with its limits), then the upgrade checks or the router (routes, 405, static
// files under a real root, HEAD), and the response is serialized as the server would write it.
#include "http_handling.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unistd.h>

namespace {

namespace http = boost::beast::http;
namespace wb = wsgate::beast;
namespace fs = std::filesystem;

struct World {
    wb::ServerSettings settings;
    wb::detail::Routes routes;
    fs::path root;

    World() {
        settings.max_http_body_bytes = 4096;
        settings.max_http_header_bytes = 2048;
        root = fs::temp_directory_path() / ("wsgate-fuzz-http-" + std::to_string(::getpid()));
        fs::create_directories(root / "sub");
        std::ofstream(root / "index.html") << "<p>home</p>";
        std::ofstream(root / "sub" / "a.txt") << "a";
        std::ofstream(root / ".hidden") << "never served";
        settings.static_root = root.string();
        routes["GET /healthz"] = [](const wb::HttpRequest&) { return wb::HttpResponse::json(200, R"({"status":"ok"})"); };
        routes["GET /throws"] = [](const wb::HttpRequest&) -> wb::HttpResponse { throw std::runtime_error("boom"); };
        routes["POST /publish"] = [](const wb::HttpRequest& req) {
            auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (body.is_discarded() || !body.is_object() || !body.contains("topic") || !body["topic"].is_string())
                return wb::HttpResponse::json(400, R"({"error":"bad body"})");
            return wb::HttpResponse::json(200, nlohmann::json{{"topic", body["topic"]}}.dump());
        };
    }
    ~World() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    World(const World&) = delete;
    World& operator=(const World&) = delete;
};

// The static path never leaves the root and never names a dot segment.
void check_static_path(const World& w, std::string_view path) {
    auto file = wb::detail::static_file_path(w.settings.static_root, path);
    if (!file) return;
    const std::string& root = w.settings.static_root;
    if (file->compare(0, root.size(), root) != 0 || file->find("/.") != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static World w;
    const std::string_view input{reinterpret_cast<const char*>(data), size};

    wb::detail::Parser parser;
    wb::detail::limit_parser(parser, w.settings);
    boost::system::error_code ec;
    std::string_view rest = input;
    // As http::async_read does: put() what has arrived until a message is done; the end of the
    // input is the peer closing.
    while (!parser.is_done()) {
        const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
        rest.remove_prefix(used);
        if (ec == http::error::need_more) {
            ec = {};
            if (rest.empty() || used == 0) {
                parser.put_eof(ec);
                break;
            }
            continue;
        }
        if (ec || used == 0) break;
    }

    std::ostringstream wire;
    if (ec || !parser.is_done()) {
        const int status = wb::detail::status_for_read_error(ec);
        if (status != 0) {
            wire << wb::detail::make_response(wb::HttpResponse::json(status, wb::detail::json_error(status, "bad")),
                                              w.settings, 11, false, false);
        }
        return 0;
    }

    auto req = parser.release();
    if (boost::beast::websocket::is_upgrade(req)) {
        // The upgrade's checks before any socket work: path, headers, subprotocol list.
        std::string path;
        std::map<std::string, std::string> query;
        wb::detail::split_target(std::string_view{req.target().data(), req.target().size()}, path, query);
        auto headers = wb::detail::lower_headers(req);
        if (auto it = headers.find("sec-websocket-protocol"); it != headers.end()) {
            for (const auto& entry : wb::detail::split_list(it->second))
                if (entry.empty() || entry.front() == ' ' || entry.back() == ' ') std::abort();
        }
        return 0;
    }

    const bool head = req.method() == http::verb::head;
    wb::HttpRequest hr = wb::detail::to_http_request(req, "127.0.0.1");
    check_static_path(w, hr.path);
    wb::HttpResponse r = wb::detail::route_request(w.routes, w.settings, hr);
    auto res = wb::detail::make_response(r, w.settings, req.version(), req.keep_alive(), head);
    if (head && !res.body().empty()) std::abort();
    if (r.status >= 500 && hr.path != "/throws") std::abort();  // only the throwing route is a 500
    wire << res;
    return 0;
}
