// MessageDispatcher: typed handlers by `type`, everything else to the generic handler.
#include "catch.hpp"

#include <wsgate/client/message_dispatcher.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using wsgate::client::MessageDispatcher;

TEST_CASE("a typed handler receives its type parsed; everything else goes to the generic handler",
          "[client][dispatch]") {
    MessageDispatcher d;
    std::vector<std::string> created;
    std::vector<std::string> other;
    d.on("event_created", [&](const nlohmann::json& m) { created.push_back(m.at("data").at("id").get<std::string>()); });
    d.otherwise([&](std::string_view t) { other.emplace_back(t); });
    CHECK(d.handles("event_created"));
    CHECK_FALSE(d.handles("event_deleted"));

    CHECK(d.dispatch(R"({"type":"event_created","data":{"id":"e1"}})"));
    for (const char* t : {R"({"type":"event_deleted","data":{"id":"e1"}})", R"({"data":1})", R"({"type":7})",
                          R"(["event_created"])", "not json", R"("event_created")"})
        CHECK_FALSE(d.dispatch(t));
    CHECK(created == std::vector<std::string>{"e1"});
    REQUIRE(other.size() == 6);
    CHECK(other[0] == R"({"type":"event_deleted","data":{"id":"e1"}})");
    CHECK(other[4] == "not json");
}

TEST_CASE("handlers are replaced and removed; a throwing handler is counted and dispatch goes on",
          "[client][dispatch]") {
    MessageDispatcher d;
    int first = 0;
    int second = 0;
    int other = 0;
    CHECK(d.empty());
    CHECK_FALSE(d.dispatch(R"({"type":"a"})"));  // no handlers at all: nowhere, no error
    d.on("a", [&](const nlohmann::json&) { ++first; });
    d.on("a", [&](const nlohmann::json&) { ++second; });
    d.otherwise([&](std::string_view) { ++other; });
    CHECK(d.dispatch(R"({"type":"a"})"));
    CHECK(first == 0);
    CHECK(second == 1);
    d.on("a", {});
    CHECK(d.empty());
    CHECK_FALSE(d.dispatch(R"({"type":"a"})"));
    CHECK(other == 1);

    d.on("boom", [](const nlohmann::json&) { throw std::runtime_error("bad"); });
    d.otherwise([](std::string_view) { throw std::runtime_error("worse"); });
    CHECK(d.dispatch(R"({"type":"boom"})"));
    CHECK_FALSE(d.dispatch(R"({"type":"x"})"));
    CHECK(d.handler_errors() == 2);
}

TEST_CASE("the type field can be another member", "[client][dispatch]") {
    MessageDispatcher d{"action"};
    int hits = 0;
    d.on("join", [&](const nlohmann::json& m) { hits += m.at("n").get<int>(); });
    CHECK(d.dispatch(R"({"action":"join","n":2})"));
    CHECK_FALSE(d.dispatch(R"({"type":"join","n":5})"));
    CHECK(hits == 2);
}
