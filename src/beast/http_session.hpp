#pragma once
// One plain HTTP connection of the server: reads requests under the parser limits, answers them
// through the routes and static files (http_handling.hpp), and hands a WebSocket upgrade to a
// WsSession after the caps and Gateway::on_connect accepted it. Internal to wsgate::beast.
#include "server_state.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>

namespace wsgate::beast {

namespace bb = boost::beast;
namespace http = bb::http;

// Reads one request at a time on its io thread.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    HttpSession(Server::Impl& srv, tcp::socket&& socket) : srv_(srv), stream_(std::move(socket)) {}

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
    }

private:
    void do_read();

    void on_read(boost::system::error_code ec);

    void write(const HttpResponse& r, unsigned version, bool keep_alive, bool head = false);

    void upgrade(http::request<http::string_body> req);

    void shutdown();

    Server::Impl& srv_;
    bb::tcp_stream stream_;
    bb::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
};


}  // namespace wsgate::beast
