#pragma once
/**
 * @file message_dispatcher.hpp Typed handlers for received messages, keyed by their `type`
 * (`on("event_created", fn)`), with a generic handler for everything else.
 */

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace wsgate::client {

/**
 * Routes each received text message to the handler registered for its `type` field, parsed once;
 * a message with no handler for its type (an unknown type, no `type`, not a JSON object, not
 * JSON) goes to the generic handler unchanged.
 *
 * Seed 004's dashboard, for example, registers its message types:
 * | type | what it carries |
 * |---|---|
 * | `event_update` | `data`: an event whose status changed (`id`, `status`, `delivery_latency_ms`, `updated_at`) |
 * | `event_created` | `data`: a new event |
 * | `event_deleted` | `data.id`: the deleted event |
 * | `metrics_update` | `data`: the summary (`total_events`, `pending_events`, `delivered_events`, `failed_events`) |
 * | `error` | `status`, `error`: a refused request |
 *
 * @code
 * wsgate::client::MessageDispatcher d;
 * d.on("event_created", [&](const nlohmann::json& m) { table.add(m["data"]); });
 * d.on("event_deleted", [&](const nlohmann::json& m) { table.remove(m["data"].value("id", "")); });
 * d.on("metrics_update", [&](const nlohmann::json& m) { summary = m["data"]; });
 * d.otherwise([](std::string_view text) { log(text); });
 * d.dispatch(frame);  // for every received frame
 * @endcode
 *
 * A handler that throws is caught: the message counts in handler_errors() and dispatch goes on.
 * @par Thread Safety Register handlers before dispatching; dispatch() may then be called from
 * one thread at a time (the handlers run on it).
 */
class MessageDispatcher {
public:
    /// Called with the parsed message (a JSON object whose `type` is the registered one).
    using Handler = std::function<void(const nlohmann::json& message)>;
    /// Called with the message text as received.
    using Fallback = std::function<void(std::string_view text)>;

    /// @param type_field the member naming a message's type (`type` in wsgate's envelopes).
    explicit MessageDispatcher(std::string type_field = "type");

    /// Sets the handler for messages of `type` (replacing one set before); an empty `h` removes it.
    void on(std::string type, Handler h);
    /// Sets the generic handler for every message no typed handler takes.
    void otherwise(Fallback h);

    /// Routes one message. True if a typed handler took it, false if it went to the generic one
    /// (or nowhere, without a generic handler).
    bool dispatch(std::string_view text);

    /// True if a typed handler is set for `type`.
    [[nodiscard]] bool handles(std::string_view type) const;
    /// True if any typed handler is set (without one, dispatch() does not parse).
    [[nodiscard]] bool empty() const noexcept { return handlers_.empty(); }
    /// Messages whose handler (typed or generic) threw, since construction.
    [[nodiscard]] std::uint64_t handler_errors() const noexcept { return handler_errors_; }

private:
    std::string type_field_;
    std::map<std::string, Handler, std::less<>> handlers_;
    Fallback otherwise_;
    std::uint64_t handler_errors_ = 0;
};

}  // namespace wsgate::client
