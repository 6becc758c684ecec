#pragma once
// A ClientStateMachine on a manual clock with a settable jitter, and the steps the state-machine
// tests share.
#include "catch.hpp"

#include <wsgate/client.hpp>

#include <cstdint>
#include <memory>

namespace wsgate_test {

struct Harness {
    std::shared_ptr<wsgate::ManualClock> clock = std::make_shared<wsgate::ManualClock>();
    std::uint64_t jitter = 0;
    wsgate::client::ClientStateMachine m;

    explicit Harness(wsgate::client::ClientSettings s = {}) : m(clock, std::move(s), [this] { return jitter; }) {}

    // Brings the machine to `connected`.
    void connected() {
        using wsgate::client::Action;
        REQUIRE(m.connect() == wsgate::client::Actions{Action::open_socket()});
        m.on_open();
        REQUIRE(m.state() == wsgate::client::ConnectionState::connected);
    }
    // Advances to the pending reconnect and fires it.
    wsgate::client::Actions fire_reconnect() {
        REQUIRE(m.reconnect_at());
        clock->set(*m.reconnect_at());
        return m.tick();
    }
    // From connected: the connection drops and every attempt up to the cap fails.
    void give_up() {
        using wsgate::client::Action;
        connected();
        m.on_close(1006);
        while (m.state() == wsgate::client::ConnectionState::reconnecting && !m.gave_up()) {
            REQUIRE(fire_reconnect() == wsgate::client::Actions{Action::open_socket()});
            m.on_close(1006);
        }
        REQUIRE(m.gave_up());
    }
};

}  // namespace wsgate_test
