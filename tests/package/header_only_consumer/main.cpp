#include <wsgate/wsgate.hpp>

#include <iostream>

#ifndef WSGATE_HEADER_ONLY
#error "wsgate::header_only must define WSGATE_HEADER_ONLY"
#endif

// Defined in fanout.cpp, the second translation unit using the core.
wsgate::BroadcastReport publish_headline(wsgate::Gateway& gw, const std::string& topic);

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
    auto report = publish_headline(gw, "news");
    const auto frames = transport->drain(c.id);  // the subscribe ack and the headline
    const bool ok = report.delivered == 1 && frames.size() == 2 &&
                    nlohmann::json::parse(frames[1]).value("topic", "") == "news";
    std::cout << "wsgate " << wsgate::version_string << " (header-only) delivered " << report.delivered << '\n';
    return ok ? 0 : 1;
}
