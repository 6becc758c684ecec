// Links only wsgate::beast (and, through it, wsgate::client): serves one HTTP route on a free
// port and reads it back over a plain socket. Exits 0 only if the reply is the route's body.
#include <wsgate/beast/server.hpp>
#include <wsgate/client/reconnect_policy.hpp>
#include <wsgate/wsgate.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>
#include <string>

namespace {
std::string http_get(unsigned short port, const std::string& path) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string reply;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if (::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size())) {
            char buf[4096];
            for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    return reply;
}
}  // namespace

int main() {
    wsgate::beast::ServerSettings settings;
    settings.port = 0;
    auto server = std::make_shared<wsgate::beast::Server>(settings);
    auto gateway = std::make_shared<wsgate::Gateway>(wsgate::GatewaySettings{},
        std::make_shared<wsgate::InMemoryConnectionStore>(), server,
        std::make_shared<wsgate::AnonymousAuthorizer>());
    server->attach(gateway);
    server->route("GET", "/hello", [](const wsgate::beast::HttpRequest&) {
        return wsgate::beast::HttpResponse::json(200, R"({"hello":"consumer"})");
    });
    server->start();
    const std::string reply = http_get(server->port(), "/hello");
    const std::string missing = http_get(server->port(), "/nowhere");
    server->stop();

    wsgate::client::ReconnectPolicy policy{{}, [] { return std::uint64_t{0}; }};
    const bool ok = reply.starts_with("HTTP/1.1 200") && reply.find(R"({"hello":"consumer"})") != std::string::npos &&
                    missing.starts_with("HTTP/1.1 404") && policy.next_delay().has_value();
    std::cout << "beast consumer on port " << server->port() << ": " << (ok ? "ok" : "FAILED") << '\n';
    if (!ok) std::cout << reply << '\n' << missing << '\n';
    return ok ? 0 : 1;
}
