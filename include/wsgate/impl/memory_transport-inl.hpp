#pragma once
// Definitions for memory_transport.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/memory_transport.hpp>
#include <wsgate/detail/config.hpp>

namespace wsgate {

WSGATE_INLINE SendStatus InMemoryTransport::send_locked(const ConnectionId& id, const Payload& payload) {
    auto it = conns_.find(id);
    if (it == conns_.end() || !it->second.open) return SendStatus::gone;
    auto& q = it->second.queue;
    if (q.size() >= capacity_) return policy_ == OverflowPolicy::report_gone ? SendStatus::gone : SendStatus::backpressure;
    q.push_back(payload);
    return SendStatus::ok;
}

WSGATE_INLINE SendStatus InMemoryTransport::send(const ConnectionId& id, const Payload& payload) {
    std::lock_guard lock(mu_);
    return send_locked(id, payload);
}

WSGATE_INLINE void InMemoryTransport::send_many(std::span<const ConnectionId> ids, const Payload& payload,
                                  std::span<SendStatus> out) {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) out[i] = send_locked(ids[i], payload);
}

WSGATE_INLINE void InMemoryTransport::close(const ConnectionId& id, CloseCode code, std::string_view) {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    if (it == conns_.end() || !it->second.open) return;
    it->second.open = false;
    it->second.closed_with = code;
    ++it->second.closes;
}

WSGATE_INLINE void InMemoryTransport::open(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    conns_.try_emplace(id);
}

WSGATE_INLINE void InMemoryTransport::vanish(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    if (auto it = conns_.find(id); it != conns_.end()) it->second.open = false;
}

WSGATE_INLINE std::vector<std::string> InMemoryTransport::drain(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    auto it = conns_.find(id);
    if (it == conns_.end()) return out;
    for (const auto& p : it->second.queue) out.push_back(*p);
    it->second.queue.clear();
    return out;
}

WSGATE_INLINE std::vector<std::string> InMemoryTransport::peek(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    auto it = conns_.find(id);
    if (it == conns_.end()) return out;
    for (const auto& p : it->second.queue) out.push_back(*p);
    return out;
}

WSGATE_INLINE std::size_t InMemoryTransport::queued(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? 0 : it->second.queue.size();
}

WSGATE_INLINE std::optional<CloseCode> InMemoryTransport::close_code(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? std::nullopt : it->second.closed_with;
}

WSGATE_INLINE std::size_t InMemoryTransport::close_count(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? 0 : it->second.closes;
}

}  // namespace wsgate
