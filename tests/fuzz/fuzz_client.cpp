// Fuzzes what a client receives: arbitrary frames (the input split at newlines) into a
// StreamTracker tracking two topics, then the resubscribe frames it would send. Nothing may
// throw, and every frame it builds is JSON carrying `since` only with a position it holds.
#include <wsgate/client/stream_tracker.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    wsgate::client::StreamTracker tracker{8};
    tracker.subscribe("room:1");
    tracker.subscribe("room:2");
    std::string_view input{reinterpret_cast<const char*>(data), size};
    std::uint64_t duplicates = 0;
    while (!input.empty()) {
        const auto nl = input.find('\n');
        const auto frame = input.substr(0, nl);
        duplicates += tracker.inspect(frame).duplicate ? 1 : 0;
        if (auto resumed = tracker.with_since(frame)) {
            if (!nlohmann::json::accept(*resumed)) std::abort();
        }
        if (nl == std::string_view::npos) break;
        input.remove_prefix(nl + 1);
    }
    if (tracker.duplicates() != duplicates) std::abort();
    for (const char* topic : {"room:1", "room:2"}) {
        const auto frame = nlohmann::json::parse(tracker.subscribe_frame(topic), nullptr, false);
        if (!frame.is_object()) std::abort();
        const auto p = tracker.position(topic);
        if (frame.contains("since") != p.has_value()) std::abort();
        if (p && (frame["since"]["offset"] != p->offset || frame["since"]["epoch"] != p->epoch)) std::abort();
    }
    return 0;
}
