// HttpSession: routes, static files and the WebSocket upgrade hand-off. See http_session.hpp.
#include "http_session.hpp"

#include "http_handling.hpp"
#include "websocket_session.hpp"

#include <wsgate/gateway.hpp>

#include <boost/beast/websocket.hpp>

#include <algorithm>

namespace wsgate::beast {

using detail::json_error;
using detail::lower_headers;
using detail::split_list;

namespace {

std::string remote_ip(const tcp::socket& s) {
    boost::system::error_code ec;
    auto ep = s.remote_endpoint(ec);
    return ec ? std::string{} : ep.address().to_string();
}

}  // namespace

void HttpSession::do_read() {
    parser_.emplace();
    detail::limit_parser(*parser_, srv_.settings);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buf_, *parser_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        self->on_read(ec);
    });
}

void HttpSession::on_read(boost::system::error_code ec) {
    if (ec == http::error::end_of_stream) return shutdown();
    if (ec) {
        const int status = detail::status_for_read_error(ec);
        if (status == 0) return;
        if (status == 431) srv_.metrics.header_too_large.fetch_add(1, std::memory_order_relaxed);
        if (status == 400) srv_.metrics.bad_requests.fetch_add(1, std::memory_order_relaxed);
        const char* reason = status == 413 ? "body too large"
                             : status == 431 ? "request header fields too large"
                                             : "bad request";
        // The rest of the request was not read: answer and close.
        return write(HttpResponse::json(status, json_error(status, reason)), 11, false);
    }
    auto req = parser_->release();
    if (websocket::is_upgrade(req)) return upgrade(std::move(req));

    HttpRequest hr = detail::to_http_request(req, remote_ip(stream_.socket()));
    HttpResponse r = detail::route_request(srv_.routes, srv_.settings, hr);
    write(r, req.version(), req.keep_alive(), req.method() == http::verb::head);
}

void HttpSession::write(const HttpResponse& r, unsigned version, bool keep_alive, bool head) {
    auto res = std::make_shared<http::response<http::string_body>>(
        detail::make_response(r, srv_.settings, version, keep_alive, head));
    http::async_write(stream_, *res, [self = shared_from_this(), res](boost::system::error_code ec, std::size_t) {
        if (ec) return;
        if (!res->keep_alive()) return self->shutdown();
        self->do_read();
    });
}

void HttpSession::upgrade(http::request<http::string_body> req) {
    ConnectRequest cr;
    detail::split_target(std::string_view{req.target().data(), req.target().size()}, cr.path, cr.query);
    if (cr.path != srv_.settings.ws_path) {
        return write(HttpResponse::json(404, json_error(404, "not_found")), req.version(), false);
    }
    cr.headers = lower_headers(req);
    cr.source_ip = remote_ip(stream_.socket());
    if (auto* ua = cr.header("user-agent")) cr.user_agent = *ua;
    // The token convention for clients that cannot set headers: `Sec-WebSocket-Protocol:
    // wsgate, <token>`; the token is the entry after the first accepted name, and only that
    // name is echoed. An offer without an accepted name (a bare token) is refused here: no
    // name could be echoed, and a browser fails such a handshake after the server accepted it.
    if (auto* proto = cr.header("sec-websocket-protocol")) {
        auto list = split_list(*proto);
        const auto& known = srv_.settings.subprotocols;
        auto name = std::find_if(list.begin(), list.end(), [&](const std::string& e) {
            return std::find(known.begin(), known.end(), e) != known.end();
        });
        if (name == list.end()) {
            return write(HttpResponse::json(400, json_error(400, "unsupported_subprotocol")), req.version(), false);
        }
        if (std::next(name) != list.end() && !cr.query_param("token")) cr.query["token"] = *std::next(name);
    }
    // The caps come before the token check: a full node spends nothing on verifying it.
    switch (srv_.take_slot(cr.source_ip)) {
        case Server::Impl::Refusal::node_cap:
            srv_.metrics.refused_node_cap.fetch_add(1, std::memory_order_relaxed);
            return write(HttpResponse::json(503, json_error(503, "server_full")), req.version(), false);
        case Server::Impl::Refusal::address_cap:
            srv_.metrics.refused_address_cap.fetch_add(1, std::memory_order_relaxed);
            return write(HttpResponse::json(503, json_error(503, "too_many_connections_from_address")),
                         req.version(), false);
        case Server::Impl::Refusal::none: break;
    }
    cr.connection_id = make_connection_id();

    auto gw = srv_.gateway.lock();
    auto session = std::make_shared<WsSession>(srv_, stream_.release_socket(), cr.connection_id);
    session->hold_slot(cr.source_ip);
    if (!gw) return session->deny(503, "not_ready", req.version());
    // Register the queue first: the Gateway may publish to the id before on_connect returns.
    {
        std::unique_lock lk(srv_.sessions_mu);
        srv_.sessions.erase(session->id());  // the key is a view: an old entry goes with its own key
        srv_.sessions.emplace(session->id(), session);
    }
    ConnectResult result = gw->on_connect(cr);
    if (!result.accepted) {
        srv_.erase(cr.connection_id, session.get());
        int status = result.status >= 400 && result.status < 600 ? result.status : 401;
        return session->deny(status, result.reason.empty() ? "unauthorized" : result.reason, req.version());
    }
    if (result.id != cr.connection_id) {
        std::unique_lock lk(srv_.sessions_mu);
        srv_.sessions.erase(cr.connection_id);
        session->set_id(result.id);  // before the entry: its key is a view of the session's id
        srv_.sessions.erase(session->id());  // the key is a view: an old entry goes with its own key
        srv_.sessions.emplace(session->id(), session);
    }
    session->accept(std::move(req));
}

void HttpSession::shutdown() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace wsgate::beast
