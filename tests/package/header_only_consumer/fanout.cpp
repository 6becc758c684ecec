#include <wsgate/gateway.hpp>

wsgate::BroadcastReport publish_headline(wsgate::Gateway& gw, const std::string& topic) {
    return gw.publish(wsgate::Envelope{"headline"}.data("hello"), wsgate::Audience::topic(topic));
}
