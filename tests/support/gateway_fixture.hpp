#pragma once
// A Gateway over the in-memory store and transport, driven by a manual clock.
#include <wsgate/wsgate.hpp>

#include <memory>
#include <string>
#include <vector>

namespace wsgate::test {

/// Authorizer that admits whatever principal the request's `as` query parameter names
/// (`user:<id>:<device>` or `public:<device>:<perm,perm>`); denies `deny` with 401.
class ScriptedAuthorizer final : public Authorizer {
public:
    AuthDecision authorize(const ConnectRequest& r) override;
};

/// Connects to `gw` with a principal spec (see ScriptedAuthorizer), opening the connection's queue
/// in `transport` first; an empty id if the Gateway refused it.
ConnectionId connect_as(Gateway& gw, InMemoryTransport& transport, const std::string& as);

struct GatewayFixture {
    explicit GatewayFixture(GatewaySettings s = {}, std::size_t queue_capacity = 1024,
                            OverflowPolicy policy = OverflowPolicy::drop_newest);

    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
    std::shared_ptr<InMemoryConnectionStore> store = std::make_shared<InMemoryConnectionStore>();
    std::shared_ptr<InMemoryTransport> transport;
    std::unique_ptr<Gateway> gw;

    /// Connects with a principal spec (see ScriptedAuthorizer) and opens the transport queue.
    ConnectionId connect(const std::string& as = "anon");
    /// Sends a message and returns the frames the connection received since the last call.
    std::vector<nlohmann::json> say(const ConnectionId& id, const std::string& text);
    /// Frames queued for `id` since the last call, parsed.
    std::vector<nlohmann::json> frames(const ConnectionId& id);
};

}  // namespace wsgate::test
