#include <wsgate/wsgate.hpp>

#include <iostream>

int main() {
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings settings;
    settings.router.topic_rules = {{"news", "", "", /*anonymous_read=*/true}};
    wsgate::Gateway gw{settings, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>()};
    wsgate::ConnectRequest req;
    req.connection_id = wsgate::make_connection_id();
    transport->open(req.connection_id);
    auto c = gw.on_connect(req);
    gw.on_message(c.id, R"({"type":"subscribe","topic":"news"})");
    auto report = gw.publish(wsgate::Envelope{"headline"}.data("hello"), wsgate::Audience::topic("news"));
    std::cout << "wsgate " << wsgate::version_string << " delivered " << report.delivered << '\n';
    return report.delivered == 1 && transport->drain(c.id).size() == 2 ? 0 : 1;
}
