// Typed dispatch of received messages by their `type`.
#include <wsgate/client/message_dispatcher.hpp>

namespace wsgate::client {

MessageDispatcher::MessageDispatcher(std::string type_field) : type_field_(std::move(type_field)) {}

void MessageDispatcher::on(std::string type, Handler h) {
    if (h) handlers_.insert_or_assign(std::move(type), std::move(h));
    else handlers_.erase(type);
}

void MessageDispatcher::otherwise(Fallback h) { otherwise_ = std::move(h); }

bool MessageDispatcher::handles(std::string_view type) const { return handlers_.find(type) != handlers_.end(); }

bool MessageDispatcher::dispatch(std::string_view text) {
    if (!handlers_.empty()) {
        auto message = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (message.is_object()) {
            const auto t = message.find(type_field_);
            if (t != message.end() && t->is_string()) {
                if (const auto h = handlers_.find(t->get_ref<const std::string&>()); h != handlers_.end()) {
                    try {
                        h->second(message);
                    } catch (...) {
                        ++handler_errors_;  // one bad message must not stop the client
                    }
                    return true;
                }
            }
        }
    }
    if (otherwise_) {
        try {
            otherwise_(text);
        } catch (...) {
            ++handler_errors_;
        }
    }
    return false;
}

}  // namespace wsgate::client
