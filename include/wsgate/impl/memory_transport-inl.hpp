#include <wsgate/memory_transport.hpp>

namespace wsgate {

SendStatus InMemoryTransport::send_locked(const ConnectionId& id, const Payload& payload) {
    auto it = conns_.find(id);
    if (it == conns_.end() || !it->second.open) return SendStatus::gone;
    auto& q = it->second.queue;
    if (q.size() >= capacity_) return policy_ == OverflowPolicy::report_gone ? SendStatus::gone : SendStatus::backpressure;
    q.push_back(payload);
    return SendStatus::ok;
}

SendStatus InMemoryTransport::send(const ConnectionId& id, const Payload& payload) {
    std::lock_guard lock(mu_);
    return send_locked(id, payload);
}

void InMemoryTransport::send_many(std::span<const ConnectionId> ids, const Payload& payload,
                                  std::span<SendStatus> out) {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) out[i] = send_locked(ids[i], payload);
}

void InMemoryTransport::close(const ConnectionId& id, CloseCode code, std::string_view) {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    if (it == conns_.end() || !it->second.open) return;
    it->second.open = false;
    it->second.closed_with = code;
    ++it->second.closes;
}

void InMemoryTransport::open(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    conns_.try_emplace(id);
}

void InMemoryTransport::vanish(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    if (auto it = conns_.find(id); it != conns_.end()) it->second.open = false;
}

std::vector<std::string> InMemoryTransport::drain(const ConnectionId& id) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    auto it = conns_.find(id);
    if (it == conns_.end()) return out;
    for (const auto& p : it->second.queue) out.push_back(*p);
    it->second.queue.clear();
    return out;
}

std::vector<std::string> InMemoryTransport::peek(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    auto it = conns_.find(id);
    if (it == conns_.end()) return out;
    for (const auto& p : it->second.queue) out.push_back(*p);
    return out;
}

std::size_t InMemoryTransport::queued(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? 0 : it->second.queue.size();
}

std::optional<CloseCode> InMemoryTransport::close_code(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? std::nullopt : it->second.closed_with;
}

std::size_t InMemoryTransport::close_count(const ConnectionId& id) const {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    return it == conns_.end() ? 0 : it->second.closes;
}

}  // namespace wsgate
