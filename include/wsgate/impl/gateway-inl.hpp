#pragma once
// Definitions for gateway.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/gateway.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/store_util.hpp>
#include <wsgate/random.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_set>

namespace wsgate {

/// What this node keeps about a connection it accepted: the reaper flag, the rate bucket and
/// copies of the times sweep() checks (so a sweep never reads the store for live connections).
struct Gateway::Local : std::enable_shared_from_this<Gateway::Local> {
    std::atomic<bool> ended{false};
    std::mutex mu;
    double tokens = 0;
    TimePoint refilled_at{};
    TimePoint connected_at{};
    TimePoint expires_at{};    // min(ttl_deadline, token_expires_at)
    TimePoint ttl_deadline{};
    std::optional<TimePoint> token_expires_at;
    bool expiry_warned = false;  // token_expiring sent for the current token
    TimePoint last_seen{};
    bool anonymous_slot = false;  ///< holds one of `rec.source_ip`'s anonymous slots (per-IP cap)
    /// This node's copy of the record and its topics: what local delivery filters with (the
    /// principal), what the index mirrors (topics, user), and what the node registers again after
    /// the store lost it. Its `id` is set before the Local is in `local_` and never changed
    /// (read without `mu`).
    ConnectionRecord rec;
    /// Serializes a change of this connection's subscriptions in the store with the same change in
    /// `rec.topics`, and with a re-registration writing `rec`: the store and the copy never end
    /// up disagreeing, whatever threads race. Taken before `mu`; never held by delivery.
    std::mutex subs_mu;
    /// The hand-over from replay to live of a topic this connection recovered (guarded by `mu`).
    struct Gate {
        std::uint64_t replayed = 0;  ///< the highest offset the replay sent; live ones up to it are duplicates
        bool replaying = false;      ///< live publications are held until the replay is sent
        std::vector<std::pair<std::uint64_t, Payload>> held;
    };
    using Gates = std::unordered_map<std::string, Gate>;
    /// Allocated while some topic is gated (most connections never recover one); guarded by `mu`.
    std::unique_ptr<Gates> gates;
    std::atomic<bool> gated{false};  ///< gates is non-empty (read without the lock on fan-out)

    Gate& open_gate(const std::string& topic, bool* created = nullptr) {
        if (!gates) gates = std::make_unique<Gates>();
        auto [it, added] = gates->try_emplace(topic);
        if (created != nullptr) *created = added;
        return it->second;
    }
    Gate* gate(const std::string& topic) {
        if (!gates) return nullptr;
        auto it = gates->find(topic);
        return it == gates->end() ? nullptr : &it->second;
    }
    /// Removes `topic`'s gate; true if it had one and none is left.
    bool close_gate(const std::string& topic) {
        if (!gates || gates->erase(topic) == 0) return false;
        if (!gates->empty()) return false;
        gates.reset();
        return true;
    }
};

/**
 * This node's delivery index: its own connections per topic and per user (all of them are
 * `local_`), so a publish finds its local audience without a store call and without visiting
 * connections outside it.
 *
 * Guarded by local_mu_: written under the unique lock together with the Local's `rec` (under its
 * `mu`), read under the shared lock. A Local is in `topics[t]` exactly while it is in `local_` and
 * `rec.topics` holds `t`, and in `users[u]` exactly while it is in `local_` and its principal's
 * user id is `u` (non-empty): no entry outlives its connection.
 */
struct Gateway::LocalIndex {
    using Members = std::unordered_set<Local*>;
    using Map = std::unordered_map<std::string, Members>;
    Map topics;
    Map users;

    /// True if the entry is new. A new key's set starts with two buckets, grown as members come
    /// (a user's set mostly holds one or two; a default set allocates thirteen on first insert).
    static bool add(Map& m, const std::string& key, Local* l) {
        return !key.empty() && m.try_emplace(key, 1).first->second.insert(l).second;
    }
    /// True if there was an entry to remove.
    static bool remove(Map& m, const std::string& key, Local* l) {
        auto it = m.find(key);
        if (it == m.end()) return false;
        const bool removed = it->second.erase(l) > 0;
        if (it->second.empty()) m.erase(it);
        return removed;
    }
};

namespace detail {

inline TimePoint earlier_of(TimePoint ttl_deadline, const Principal& p) {
    return p.expires_at ? std::min(ttl_deadline, *p.expires_at) : ttl_deadline;
}

inline bool token_expired_at(const Principal& p, TimePoint now) { return p.expires_at && *p.expires_at <= now; }

inline EndReason expiry_reason(const Principal& p, TimePoint now) {
    return token_expired_at(p, now) ? EndReason::token_expired : EndReason::ttl_expired;
}

}  // namespace detail

WSGATE_INLINE Gateway::Gateway(GatewaySettings settings, std::shared_ptr<ConnectionStore> store,
                 std::shared_ptr<Transport> transport, std::shared_ptr<Authorizer> authorizer,
                 std::shared_ptr<const Clock> clock, std::shared_ptr<Bus> bus)
    : settings_(std::move(settings)),
      store_(std::move(store)),
      transport_(std::move(transport)),
      authorizer_(std::move(authorizer)),
      clock_(std::move(clock)),
      bus_(std::move(bus)),
      index_(std::make_unique<LocalIndex>()) {
    if (!store_) throw std::invalid_argument("wsgate::Gateway: store is null");
    if (!transport_) throw std::invalid_argument("wsgate::Gateway: transport is null");
    if (!authorizer_) throw std::invalid_argument("wsgate::Gateway: authorizer is null");
    if (!clock_) throw std::invalid_argument("wsgate::Gateway: clock is null");
    if (settings_.max_message_bytes == 0) throw std::invalid_argument("wsgate::Gateway: max_message_bytes is 0");
    if (settings_.rate_per_second < 0 || settings_.rate_burst < 0)
        throw std::invalid_argument("wsgate::Gateway: negative rate limit");
    if (settings_.rate_per_second > 0 && settings_.rate_burst < 1)
        throw std::invalid_argument("wsgate::Gateway: rate_burst must be at least 1");
    if (settings_.ttl.count() <= 0) throw std::invalid_argument("wsgate::Gateway: ttl must be positive");
    if (settings_.node_lease.count() < 0) throw std::invalid_argument("wsgate::Gateway: negative node_lease");
    leases_ = settings_.node_lease.count() > 0 && settings_.local_delivery_only.value_or(true);
    if (settings_.node_id.empty()) {
        try {
            settings_.node_id = store_->stable_node_id();
        } catch (const std::exception&) {
            store_failed();
        }
    }
    const bool stable_id = !settings_.node_id.empty();
    if (!stable_id) settings_.node_id = random_token(9);
    if (leases_) {
        // Records a previous incarnation of this node left behind cannot be live: this process
        // holds no sockets yet. A random id has none to remove.
        if (stable_id) {
            try {
                store_->remove_node(settings_.node_id);
            } catch (const std::exception&) {
                store_failed();
                // Cleanup cannot be retried once connections arrive under this id, so the node
                // takes a fresh one; the old id's lease then runs out and its records are reaped.
                settings_.node_id = random_token(9);
            }
        }
        renew_lease(clock_->now(), true);
    }
    for (const auto& rule : settings_.router.topic_rules) {
        const std::string where = "wsgate::Gateway: topic rule '" + rule.pattern + "': ";
        if (rule.history_ttl.count() < 0) throw std::invalid_argument(where + "negative history_ttl");
        if (rule.device_cursors && rule.history_size == 0)
            throw std::invalid_argument(where + "device_cursors needs history_size > 0");
        if (rule.device_cursors && rule.cursor_ttl.count() <= 0)
            throw std::invalid_argument(where + "cursor_ttl must be positive");
        if (rule.presence_events && !rule.presence) throw std::invalid_argument(where + "presence_events needs presence");
        if (rule.history_size > 0 && !store_->supports_streams())
            throw std::invalid_argument(where + "history_size needs a store that keeps topic streams");
    }
    local_only_ = settings_.local_delivery_only.value_or(store_->shared());
    router_ = std::make_unique<EventRouter>(settings_.router);
    bus_routed_ = bus_ && bus_->routed();
    if (bus_) {
        bus_->set_handler([this](const BusMessage& m) {
            if (m.origin_node == settings_.node_id) return;  // delivered locally already
            bump(metrics_.bus_received);
            deliver_local(make_payload(m.payload), m.audience, m.offset);
        });
    }
}

WSGATE_INLINE Gateway::~Gateway() {
    if (!bus_) return;
    bus_->set_handler(nullptr);
    if (!bus_routed_) return;
    // The bus may outlive this Gateway: give back the interest the index still holds.
    std::vector<BusRoute> held;
    {
        std::unique_lock lock(local_mu_);
        for (const auto& [id, local] : local_) unindex(*local, &held);
    }
    bus_unlisten(held);
}

WSGATE_INLINE void Gateway::bus_listen(const BusRoute& route) {
    bool ok = false;
    try {
        ok = bus_->listen(route);
    } catch (...) {
        ok = false;
    }
    if (!ok) bump(metrics_.bus_listen_failures);
}

WSGATE_INLINE void Gateway::bus_unlisten(const std::vector<BusRoute>& routes) {
    if (!bus_routed_) return;
    for (const auto& route : routes) {
        try {
            bus_->unlisten(route);
        } catch (...) {
            bump(metrics_.bus_listen_failures);
        }
    }
}

WSGATE_INLINE void Gateway::set_end_hook(EndHook h) {
    std::lock_guard lock(hook_mu_);
    end_hook_ = std::move(h);
}

WSGATE_INLINE std::size_t Gateway::local_count() const {
    std::shared_lock lock(local_mu_);
    return local_.size();
}

WSGATE_INLINE LocalIndexSize Gateway::local_index_size() const {
    std::shared_lock lock(local_mu_);
    LocalIndexSize out;
    out.topics = index_->topics.size();
    for (const auto& [topic, members] : index_->topics) out.subscriptions += members.size();
    out.users = index_->users.size();
    for (const auto& [user, members] : index_->users) out.user_connections += members.size();
    return out;
}

WSGATE_INLINE void Gateway::unindex(Local& local, std::vector<BusRoute>* released) {
    std::lock_guard lock(local.mu);
    const auto& user = local.rec.principal.user_id;
    if (LocalIndex::remove(index_->users, user, &local) && released != nullptr) released->push_back(BusRoute::user(user));
    for (const auto& topic : local.rec.topics)
        if (LocalIndex::remove(index_->topics, topic, &local) && released != nullptr)
            released->push_back(BusRoute::topic(topic));
}

WSGATE_INLINE std::shared_ptr<Gateway::Local> Gateway::local_of(const ConnectionId& id) const {
    std::shared_lock lock(local_mu_);
    auto it = local_.find(id);
    return it == local_.end() ? nullptr : it->second;
}

// ---- connect ----------------------------------------------------------------------------

WSGATE_INLINE ConnectResult Gateway::on_connect(const ConnectRequest& request) {
    AuthDecision d;
    try {
        d = authorizer_->authorize(request);
    } catch (const std::exception&) {
        d = AuthDecision::deny(401, "auth_error");
    }
    if (!d.allowed) {
        bump(metrics_.denied_connects);
        ConnectResult r;
        r.status = d.status == 0 || d.status == 200 ? 401 : d.status;
        r.reason = d.reason.empty() ? "unauthorized" : d.reason;
        return r;
    }
    return admit(request, std::move(d.principal));
}

WSGATE_INLINE ConnectResult Gateway::on_connect(const ConnectRequest& request, Principal principal) {
    return admit(request, std::move(principal));
}

WSGATE_INLINE ConnectResult Gateway::admit(const ConnectRequest& request, Principal principal) {
    ConnectResult result;
    auto deny = [&](int status, std::string reason) {
        bump(metrics_.denied_connects);
        result.status = status;
        result.reason = std::move(reason);
        return result;
    };
    if (settings_.max_connections > 0 && local_count() >= settings_.max_connections)
        return deny(503, "server_full");

    const auto now = clock_->now();
    // A principal from upstream (API Gateway caches authorizer results) may carry a spent token.
    if (detail::token_expired_at(principal, now)) return deny(401, "expired");
    ConnectionRecord rec;
    rec.id = request.connection_id.empty() ? make_connection_id() : request.connection_id;
    rec.connected_at = now;
    rec.expires_at = detail::earlier_of(now + settings_.ttl, principal);
    rec.last_seen = now;
    rec.source_ip = request.source_ip;
    rec.user_agent = request.user_agent;
    if (rec.user_agent.empty())
        if (const auto* ua = request.header("user-agent")) rec.user_agent = *ua;
    rec.node_id = settings_.node_id;
    rec.principal = std::move(principal);

    auto local = std::make_shared<Local>();
    local->tokens = settings_.rate_burst;
    local->refilled_at = now;
    local->connected_at = now;
    local->expires_at = rec.expires_at;
    local->ttl_deadline = now + settings_.ttl;
    local->token_expires_at = rec.principal.expires_at;
    local->last_seen = now;
    // Only a known address is counted: a socket server always knows its peer's.
    const bool anonymous = rec.principal.kind == PrincipalKind::anonymous && !rec.source_ip.empty();
    local->anonymous_slot = anonymous;
    local->rec = rec;
    // With a routed bus the node hears the user's publishes before the connection is accepted;
    // the users index entry added below owns this interest, and a refused connect gives it back.
    const bool listens = bus_routed_ && !rec.principal.user_id.empty();
    if (listens) bus_listen(BusRoute::user(rec.principal.user_id));
    struct ListenGuard {
        Gateway* gw;
        const std::string* user;
        ~ListenGuard() {
            if (gw != nullptr) gw->bus_unlisten({BusRoute::user(*user)});
        }
    } listen_guard{listens ? this : nullptr, &rec.principal.user_id};
    // Undoes the local registration when the store refuses the record.
    bool registered = false;
    auto unregister = [&] {
        if (!registered) return;
        std::unique_lock lock(local_mu_);
        unindex(*local);
        local_.erase(rec.id);
        if (anonymous) release_anonymous_slot(rec.source_ip);
    };

    try {
        // The per-user cap is checked and the record written under one lock, so two racing
        // connects of one user cannot both take the last slot on this node.
        std::unique_lock cap_lock(connect_mu_, std::defer_lock);
        const bool capped = settings_.max_connections_per_user > 0 && !rec.principal.user_id.empty();
        if (capped) {
            cap_lock.lock();
            if (store_->connections_of_user(rec.principal.user_id).size() >= settings_.max_connections_per_user)
                return deny(429, "too_many_connections");
        }
        {
            std::unique_lock lock(local_mu_);
            if (anonymous && settings_.max_anonymous_per_ip > 0) {
                auto it = anonymous_per_ip_.find(rec.source_ip);
                if (it != anonymous_per_ip_.end() && it->second >= settings_.max_anonymous_per_ip)
                    return deny(429, "too_many_anonymous_connections");
            }
            if (!local_.try_emplace(local->rec.id, local).second) return deny(409, "duplicate_connection_id");
            LocalIndex::add(index_->users, rec.principal.user_id, local.get());
            registered = true;
            if (anonymous) ++anonymous_per_ip_[rec.source_ip];
        }
        store_->put(rec);
    } catch (const std::exception&) {
        store_failed();
        unregister();
        return deny(503, "store_unavailable");
    }
    listen_guard.gw = nullptr;  // accepted: the index entry holds the interest
    bump(metrics_.connects);
    metrics_.active_connections.fetch_add(1, std::memory_order_relaxed);
    result.accepted = true;
    result.status = 200;
    result.id = rec.id;
    result.principal = std::move(rec.principal);
    return result;
}

WSGATE_INLINE void Gateway::release_anonymous_slot(const std::string& ip) {
    auto it = anonymous_per_ip_.find(ip);
    if (it == anonymous_per_ip_.end()) return;
    if (--it->second == 0) anonymous_per_ip_.erase(it);
}

// ---- messages ---------------------------------------------------------------------------

namespace detail {

// Rejects nesting deeper than `limit` before the parser sees it (bounded recursion and memory).
inline bool valid_ref(const nlohmann::json& ref) {
    if (ref.is_number_integer()) return true;
    return ref.is_string() && !ref.get_ref<const std::string&>().empty() && ref.get_ref<const std::string&>().size() <= 64;
}

inline bool nesting_within(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > limit) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

}  // namespace detail

WSGATE_INLINE void Gateway::send_error(const ConnectionId& id, int status, std::string_view message,
                                       const nlohmann::json& ref) {
    Envelope e{"error"};
    e.field("status", status);
    e.field("error", std::string{message});
    if (!ref.is_null()) e.field("ref", ref);
    send_to(id, e);
}

WSGATE_INLINE SendStatus Gateway::send_to(const ConnectionId& id, const Envelope& e) {
    Payload p;
    try {
        p = e.serialize(clock_->now());
    } catch (const std::exception&) {
        bump(metrics_.send_failures);
        return SendStatus::error;
    }
    SendStatus s = SendStatus::error;
    try {
        s = transport_->send(id, p);
    } catch (const std::exception&) {
        s = SendStatus::error;
    }
    switch (s) {
        case SendStatus::ok:
            bump(metrics_.messages_out);
            bump(metrics_.bytes_out, p->size());
            break;
        case SendStatus::gone: end(id, EndReason::gone); break;
        case SendStatus::backpressure: bump(metrics_.backpressured); break;
        case SendStatus::error: bump(metrics_.send_failures); break;
    }
    return s;
}

WSGATE_INLINE std::error_code Gateway::on_message(const ConnectionId& id, std::string_view text) {
    bump(metrics_.messages_in);
    bump(metrics_.bytes_in, text.size());
    const auto now = clock_->now();
    nlohmann::json ref;  // echoed in every reply once the message is parsed
    auto fail = [&](protocol_errc e, std::string_view detail = {}) -> std::error_code {
        send_error(id, status_of(e), detail.empty() ? make_error_code(e).message() : detail, ref);
        return e;
    };

    auto local = local_of(id);
    if (text.size() > settings_.max_message_bytes) {
        bump(metrics_.oversize);
        if (settings_.oversize_policy == LimitPolicy::close) {
            end(id, EndReason::policy, "message too big", CloseCode::message_too_big);
            return protocol_errc::too_large;
        }
        return fail(protocol_errc::too_large);
    }
    if (local && settings_.rate_per_second > 0) {
        bool allowed = false;
        {
            std::lock_guard lock(local->mu);
            const double elapsed = std::chrono::duration<double>(now - local->refilled_at).count();
            if (elapsed > 0) {
                local->tokens = std::min(settings_.rate_burst, local->tokens + elapsed * settings_.rate_per_second);
                local->refilled_at = now;
            }
            if (local->tokens >= 1.0) {
                local->tokens -= 1.0;
                allowed = true;
            }
        }
        if (!allowed) {
            bump(metrics_.rate_limited);
            if (settings_.rate_policy == LimitPolicy::close) {
                end(id, EndReason::policy, "rate limit exceeded");
                return protocol_errc::rate_limited;
            }
            return fail(protocol_errc::rate_limited);
        }
    }

    std::optional<ConnectionRecord> rec;
    try {
        std::optional<TimePoint> new_expiry;
        if (settings_.extend_ttl_on_message) {
            new_expiry = now + settings_.ttl;
            if (local) {
                std::lock_guard lock(local->mu);
                if (local->token_expires_at) new_expiry = std::min(*new_expiry, *local->token_expires_at);
            }
        }
        if (!store_->touch(id, now, new_expiry)) return protocol_errc::unknown_connection;
        rec = store_->get(id);
        // Sliding never reaches past the token (a connection this node does not hold is capped here).
        if (rec && settings_.extend_ttl_on_message && rec->principal.expires_at &&
            *rec->principal.expires_at < rec->expires_at) {
            rec->expires_at = *rec->principal.expires_at;
            store_->touch(id, now, rec->expires_at);
        }
    } catch (const std::exception&) {
        store_failed();
        return fail(protocol_errc::store_unavailable);
    }
    if (!rec) return protocol_errc::unknown_connection;
    // A connection past its token's expiry (or TTL) acts no more, even before the next sweep.
    if (detail::token_expired_at(rec->principal, now) || rec->expires_at <= now) {
        end(id, detail::expiry_reason(rec->principal, now));
        return protocol_errc::unknown_connection;
    }
    if (local) {
        std::lock_guard lock(local->mu);
        local->last_seen = now;
        if (settings_.extend_ttl_on_message) {
            local->ttl_deadline = now + settings_.ttl;
            local->expires_at = rec->expires_at;
        }
    }

    if (!detail::nesting_within(text, 64)) {
        bump(metrics_.bad_messages);
        return fail(protocol_errc::malformed_json, "message is nested too deeply");
    }
    auto msg = nlohmann::json::parse(text, nullptr, false);
    if (msg.is_discarded()) {
        bump(metrics_.bad_messages);
        return fail(protocol_errc::malformed_json);
    }
    // Under UnknownRoutePolicy::ack, JSON that names no route (not an object, or no route key)
    // is acknowledged like an unknown route ("anything else → ack").
    const bool ack_unrouted = router_->settings().unknown_route == UnknownRoutePolicy::ack;
    auto acknowledge = [&]() -> std::error_code {
        MessageContext ctx{*this, *rec, msg, std::string{}, now};
        router_->acknowledge(ctx);
        return {};
    };
    if (!msg.is_object()) {
        if (ack_unrouted) return acknowledge();
        bump(metrics_.bad_messages);
        return fail(protocol_errc::not_an_object);
    }
    if (auto it = msg.find("ref"); it != msg.end()) {
        if (!detail::valid_ref(*it)) {
            bump(metrics_.bad_messages);
            return fail(protocol_errc::invalid_ref);
        }
        ref = *it;
    }
    std::string route;
    if (auto ec = router_->route_of(msg, route)) {
        if (ack_unrouted) return acknowledge();
        bump(metrics_.bad_messages);
        return fail(protocol_errc::missing_route, "message needs a string '" + router_->settings().route_key + "'");
    }
    MessageContext ctx{*this, *rec, msg, std::move(route), now};
    try {
        router_->dispatch(ctx);
    } catch (const std::exception&) {
        bump(metrics_.handler_errors);
        return fail(protocol_errc::handler_failed);
    } catch (...) {
        bump(metrics_.handler_errors);
        return fail(protocol_errc::handler_failed);
    }
    return {};
}

WSGATE_INLINE void Gateway::on_disconnect(const ConnectionId& id) { end(id, EndReason::client_closed); }

WSGATE_INLINE bool Gateway::touch(const ConnectionId& id) {
    auto local = local_of(id);
    if (!local) return false;
    const auto now = clock_->now();
    std::lock_guard lock(local->mu);
    // sweep() reads this copy; the store's last_seen moves with messages only (no remote write per pong).
    local->last_seen = std::max(local->last_seen, now);
    return true;
}

// ---- the reaper -------------------------------------------------------------------------

WSGATE_INLINE bool Gateway::end(const ConnectionId& id, EndReason r, std::string_view reason_text, std::optional<CloseCode> code) {
    // Arbiter: for a connection this node holds, the Local flag (exactly one exchange wins);
    // otherwise the store's remove (exactly one remover sees true).
    auto local = local_of(id);
    std::optional<ConnectionRecord> rec;
    bool won = false;
    try {
        if (local) {
            if (local->ended.exchange(true)) return false;
            won = true;
            rec = store_->get(id);
            store_->remove(id);
        } else {
            rec = store_->get(id);
            won = store_->remove(id);
        }
    } catch (const std::exception&) {
        store_failed();
        // The store failed; a local connection is still ended once (its flag is set), and its
        // record is removed by a later sweep once the store answers.
        if (!local) return false;
        std::lock_guard lock(unremoved_mu_);
        unremoved_.push_back(id);
    }
    if (!won) return false;
    if (!rec && local) {
        std::lock_guard lock(local->mu);
        rec = local->rec;
    }
    if (!rec) {
        rec.emplace();
        rec->id = id;
    }
    finish(*rec, r, local != nullptr, reason_text, code);
    return true;
}

WSGATE_INLINE void Gateway::finish(const ConnectionRecord& rec, EndReason r, bool was_local, std::string_view reason_text,
                     std::optional<CloseCode> code) {
    if (was_local) {
        std::vector<BusRoute> released;
        {
            std::unique_lock lock(local_mu_);
            if (auto it = local_.find(rec.id); it != local_.end()) {
                unindex(*it->second, bus_routed_ ? &released : nullptr);
                if (it->second->anonymous_slot) release_anonymous_slot(it->second->rec.source_ip);
                if (it->second->gated.exchange(false)) gated_.fetch_sub(1, std::memory_order_relaxed);
                local_.erase(it);
            }
        }
        bus_unlisten(released);
        metrics_.active_connections.fetch_sub(1, std::memory_order_relaxed);
    }
    // A socket that closed or reported Gone has nobody to send a close frame to.
    const EndReasonInfo& info = end_reason_info(r);
    if (info.sends_close) {
        try {
            if (reason_text.empty()) reason_text = info.close_text;
            transport_->close(rec.id, code.value_or(info.close_code), reason_text);
        } catch (const std::exception&) {
            bump(metrics_.send_failures);
        }
    }
    bump(metrics_.disconnects);
    bump(metrics_.ended_total(r));
    for (const auto& topic : rec.topics)
        if (const TopicRule* rule = rule_for(topic); rule && rule->presence_events) announce("leave", topic, rec);
    EndHook hook;
    {
        std::lock_guard lock(hook_mu_);
        hook = end_hook_;
    }
    if (hook) {
        try {
            hook(rec, r);
        } catch (...) {
            bump(metrics_.handler_errors);
        }
    }
}

WSGATE_INLINE bool Gateway::renew_lease(TimePoint now, bool force) {
    {
        std::lock_guard lock(lease_mu_);
        if (!force && lease_renewed_ && now - *lease_renewed_ < settings_.node_lease / 3) return true;
    }
    bool ok = false;
    try {
        store_->renew_lease(settings_.node_id, now, settings_.node_lease);
        ok = true;
    } catch (const std::exception&) {
        store_failed();
    }
    std::lock_guard lock(lease_mu_);
    if (ok) lease_renewed_ = now;
    else lease_renewed_.reset();  // retried on the next sweep
    return ok;
}

WSGATE_INLINE std::size_t Gateway::check_registration(TimePoint now) {
    std::lock_guard guard(register_mu_);
    bool held = false;
    try {
        held = store_->holds_lease(settings_.node_id, now);
    } catch (const std::exception&) {
        store_failed();
        store_lost_.store(true, std::memory_order_relaxed);
        return 0;
    }
    // A lost lease means lost (or reaped) records: a restart without persistence, or an outage
    // longer than the lease. Registering again is idempotent, so a partial run is simply repeated.
    if (!held) reregister_due_ = true;
    if (!reregister_due_) {
        store_lost_.store(false, std::memory_order_relaxed);
        renew_lease(now, false);
        return 0;
    }
    store_lost_.store(true, std::memory_order_relaxed);
    // The lease first, so no other node's sweep reaps what follows.
    if (!renew_lease(now, true)) return 0;
    std::vector<std::shared_ptr<Local>> locals;
    {
        std::shared_lock lock(local_mu_);
        locals.reserve(local_.size());
        for (const auto& [id, local] : local_) locals.push_back(local);
    }
    std::size_t registered = 0;
    try {
        for (const auto& local : locals) {
            // Held across the writes, so no subscribe or unsubscribe of this connection runs
            // between the copy and the store.
            std::lock_guard order(local->subs_mu);
            if (local->ended.load()) continue;
            ConnectionRecord rec;
            {
                std::lock_guard lock(local->mu);
                rec = local->rec;
                rec.expires_at = local->expires_at;
                rec.last_seen = local->last_seen;
            }
            store_->put(rec);
            for (const auto& topic : rec.topics) store_->subscribe(rec.id, topic);
            // Ended meanwhile: its reaper may have removed the record before this put.
            if (local->ended.load()) store_->remove(rec.id);
            else ++registered;
        }
    } catch (const std::exception&) {
        store_failed();
        bump(metrics_.reregistered, registered);
        return registered;  // still due: the next sweep goes through them again
    }
    reregister_due_ = false;
    store_lost_.store(false, std::memory_order_relaxed);
    bump(metrics_.reregistrations);
    bump(metrics_.reregistered, registered);
    return registered;
}

WSGATE_INLINE bool Gateway::note_topic(const ConnectionId& id, const std::string& topic, bool subscribed,
                                       bool* indexed) {
    if (indexed != nullptr) *indexed = false;
    // Unique: the copy and the index change together, and a connection that finish() took out of
    // `local_` meanwhile gets no entry back.
    std::unique_lock index_lock(local_mu_);
    auto found = local_.find(id);
    if (found == local_.end()) return false;
    Local& local = *found->second;
    std::lock_guard lock(local.mu);
    auto& topics = local.rec.topics;
    auto it = std::find(topics.begin(), topics.end(), topic);
    const bool had = it != topics.end();
    bool changed = false;
    if (subscribed && !had) {
        topics.push_back(topic);
        changed = LocalIndex::add(index_->topics, topic, &local);
    } else if (!subscribed && had) {
        topics.erase(it);
        changed = LocalIndex::remove(index_->topics, topic, &local);
    }
    if (indexed != nullptr) *indexed = changed;
    return had;
}

namespace detail {
inline std::int64_t steady_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace detail

WSGATE_INLINE void Gateway::store_failed() noexcept {
    bump(metrics_.store_errors);
    store_failed_at_.store(detail::steady_ns(), std::memory_order_relaxed);
}

WSGATE_INLINE void Gateway::bus_failed() noexcept {
    bump(metrics_.bus_errors);
    bus_failed_at_.store(detail::steady_ns(), std::memory_order_relaxed);
}

WSGATE_INLINE GatewayHealth Gateway::health() const {
    constexpr std::int64_t hold = std::chrono::nanoseconds{std::chrono::seconds{5}}.count();
    const auto now = detail::steady_ns();
    auto recent = [&](const std::atomic<std::int64_t>& at) {
        const auto t = at.load(std::memory_order_relaxed);
        return t != 0 && now - t < hold;
    };
    GatewayHealth h;
    h.store_ok = !store_lost_.load(std::memory_order_relaxed) && !recent(store_failed_at_);
    bool bus_up = true;
    if (bus_) {
        try {
            bus_up = bus_->healthy();
        } catch (...) {
            bus_up = false;
        }
    }
    h.bus_ok = bus_up && !recent(bus_failed_at_);
    return h;
}

WSGATE_INLINE SweepReport Gateway::sweep(TimePoint now) {
    SweepReport report;
    if (leases_) {
        report.reregistered = check_registration(now);
        // Bounded work per sweep; a larger backlog drains over the following sweeps.
        constexpr std::size_t reap_batch = 1000;
        try {
            report.node_lost = store_->reap_expired_nodes(now, reap_batch);
        } catch (const std::exception&) {
            store_failed();
        }
    }
    // Records of connections that ended while the store failed.
    std::vector<ConnectionId> unremoved;
    {
        std::lock_guard lock(unremoved_mu_);
        unremoved.swap(unremoved_);
    }
    for (std::size_t i = 0; i < unremoved.size(); ++i) {
        try {
            store_->remove(unremoved[i]);
        } catch (const std::exception&) {
            store_failed();
            std::lock_guard lock(unremoved_mu_);
            unremoved_.insert(unremoved_.end(), unremoved.begin() + static_cast<std::ptrdiff_t>(i), unremoved.end());
            break;
        }
    }
    std::vector<std::pair<ConnectionId, EndReason>> due;
    std::vector<std::pair<ConnectionId, TimePoint>> warn;
    const auto warning = settings_.token_expiry_warning;
    {
        std::shared_lock lock(local_mu_);
        for (const auto& [id, local] : local_) {
            std::lock_guard l(local->mu);
            const auto& token_exp = local->token_expires_at;
            if (local->expires_at <= now)
                due.emplace_back(id, token_exp && *token_exp <= now ? EndReason::token_expired : EndReason::ttl_expired);
            else if (settings_.max_age.count() > 0 && now - local->connected_at >= settings_.max_age)
                due.emplace_back(id, EndReason::max_age);
            else if (settings_.inactivity_timeout.count() > 0 && now - local->last_seen >= settings_.inactivity_timeout)
                due.emplace_back(id, EndReason::idle);
            // Warn only when the token is what ends the connection: a refresh cannot move the TTL.
            else if (warning.count() > 0 && token_exp && !local->expiry_warned && *token_exp == local->expires_at &&
                     now >= *token_exp - warning) {
                local->expiry_warned = true;
                warn.emplace_back(id, *token_exp);
            }
        }
    }
    for (const auto& [id, reason] : due) {
        if (!end(id, reason)) continue;
        if (reason == EndReason::ttl_expired) ++report.ttl_expired;
        else if (reason == EndReason::token_expired) ++report.token_expired;
        else if (reason == EndReason::max_age) ++report.max_age;
        else ++report.idle;
    }
    for (const auto& [id, at] : warn)
        if (send_to(id, Envelope{"token_expiring"}.field("expires_at", format_iso8601(at))) == SendStatus::ok)
            ++report.token_warnings;
    // Records nobody holds locally: other processes behind API Gateway, or nodes that died.
    std::vector<ConnectionRecord> expired;
    try {
        expired = store_->expire(now);
    } catch (const std::exception&) {
        store_failed();
    }
    for (const auto& rec : expired) {
        const EndReason reason = detail::expiry_reason(rec.principal, now);
        auto& count = reason == EndReason::token_expired ? report.token_expired : report.ttl_expired;
        auto local = local_of(rec.id);
        if (local) {
            if (local->ended.exchange(true)) continue;
            finish(rec, reason, true, {});
            ++count;
        } else if (!local_only_ || rec.node_id == settings_.node_id) {
            finish(rec, reason, false, {});
            ++count;
        }
        // else: another live node's record; that node closes its own socket.
    }
    return report;
}

WSGATE_INLINE bool Gateway::refresh_principal(const ConnectionId& id, Principal p, std::optional<TimePoint> new_expiry) {
    // With a routed bus, a connection that changes user is listened for under its new user before
    // the index moves it (so none of the new user's publishes is missed), and its old user's
    // interest is given back after. Both happen outside local_mu_: listen() waits on the network.
    std::vector<BusRoute> released;
    std::optional<std::string> listened;  // a user listened for here whose entry does not hold it (yet)
    try {
        auto rec = store_->get(id);
        if (!rec) return false;
        rec->principal = std::move(p);
        if (new_expiry) rec->expires_at = *new_expiry;
        store_->put(*rec);
        const std::string& new_user = rec->principal.user_id;
        if (bus_routed_ && !new_user.empty()) {
            if (auto local = local_of(id)) {
                bool moves = false;
                {
                    std::lock_guard lock(local->mu);
                    moves = local->rec.principal.user_id != new_user;
                }
                if (moves) {
                    bus_listen(BusRoute::user(new_user));
                    listened = new_user;
                }
            }
        }
        bool added = false;
        {
            std::unique_lock index_lock(local_mu_);
            if (auto it = local_.find(id); it != local_.end()) {
                Local* local = it->second.get();
                std::lock_guard lock(local->mu);
                if (new_expiry) local->expires_at = *new_expiry;
                // Local delivery filters with this copy from the next publish on.
                const std::string& old_user = local->rec.principal.user_id;
                if (old_user != new_user) {
                    if (LocalIndex::remove(index_->users, old_user, local)) released.push_back(BusRoute::user(old_user));
                    added = LocalIndex::add(index_->users, new_user, local);
                }
                local->rec.principal = rec->principal;
                local->rec.expires_at = rec->expires_at;
                if (local->token_expires_at != rec->principal.expires_at) local->expiry_warned = false;
                local->token_expires_at = rec->principal.expires_at;
            }
        }
        if (bus_routed_) {
            // Every users entry holds exactly one listen: the one taken above, or (a concurrent
            // refresh moved the connection first) one taken now.
            if (added && !listened) bus_listen(BusRoute::user(new_user));
            else if (!added && listened) released.push_back(BusRoute::user(*listened));
        }
        bus_unlisten(released);
        return true;
    } catch (const std::exception&) {
        store_failed();
        if (listened) released.push_back(BusRoute::user(*listened));
        bus_unlisten(released);
        return false;
    }
}

WSGATE_INLINE AuthDecision Gateway::reauthorize(const ConnectionRecord& rec, const std::string& token) {
    try {
        ConnectRequest request;
        request.connection_id = rec.id;
        request.source_ip = rec.source_ip;
        request.user_agent = rec.user_agent;
        if (!rec.user_agent.empty()) request.headers["user-agent"] = rec.user_agent;
        // Every place a stock authorizer looks, so whichever it is configured for finds the token.
        request.query["token"] = token;
        request.headers["authorization"] = "Bearer " + token;
        request.headers["sec-websocket-protocol"] = "bearer, " + token;
        return authorizer_->authorize(request);
    } catch (const std::exception&) {
        return AuthDecision::deny(401, "auth_error");
    }
}

WSGATE_INLINE TimePoint Gateway::deadline_for(const ConnectionRecord& rec, const Principal& p, TimePoint now) const {
    const TimePoint ttl_deadline = settings_.extend_ttl_on_message ? now + settings_.ttl : rec.connected_at + settings_.ttl;
    return detail::earlier_of(ttl_deadline, p);
}

// ---- topic policy and subscriptions -----------------------------------------------------

WSGATE_INLINE const TopicRule* Gateway::rule_for(std::string_view topic) const noexcept {
    for (const auto& r : settings_.router.topic_rules)
        if (r.matches(topic)) return &r;
    return nullptr;
}

WSGATE_INLINE bool Gateway::may_read(const Principal& p, std::string_view topic) const noexcept {
    const TopicRule* rule = rule_for(topic);
    switch (p.kind) {
        case PrincipalKind::user:
            if (rule == nullptr) return settings_.router.open_topics;
            return p.has_permission(rule->read_permission);
        case PrincipalKind::public_device:
            // A public device token reads exactly what its permissions name.
            return rule != nullptr && !rule->read_permission.empty() && p.has_permission(rule->read_permission);
        case PrincipalKind::anonymous:
            return rule != nullptr && rule->anonymous_read && p.has_permission(rule->read_permission);
    }
    return false;
}

WSGATE_INLINE bool Gateway::may_publish(const Principal& p, std::string_view topic) const noexcept {
    // Public and anonymous principals read, never act; a user needs a rule's explicit grant.
    if (p.kind != PrincipalKind::user) return false;
    const TopicRule* rule = rule_for(topic);
    return rule != nullptr && !rule->publish_permission.empty() && p.has_permission(rule->publish_permission);
}

WSGATE_INLINE std::string Gateway::read_permission(std::string_view topic) const {
    const TopicRule* rule = rule_for(topic);
    return rule ? rule->read_permission : std::string{};
}

WSGATE_INLINE SubscriptionResult Gateway::subscribe(const ConnectionRecord& rec, const std::string& topic) {
    SubscriptionResult r;
    if (!may_read(rec.principal, topic)) {
        r.error = protocol_errc::forbidden;
        return r;
    }
    const auto local = local_of(rec.id);
    // With a routed bus this node hears the topic before the subscription takes effect: a
    // publication made on another node once this returns (after the ack) reaches it, and a
    // recovery's stream read, which follows, covers what came before. The index entry added
    // below owns this interest; without one (already held, refused, ended) it is given back.
    const bool listens = bus_routed_ && local;
    if (listens) bus_listen(BusRoute::topic(topic));
    bool indexed = false;
    {
        std::unique_lock<std::mutex> order;
        if (local) order = std::unique_lock<std::mutex>(local->subs_mu);
        try {
            switch (store_->subscribe_capped(rec.id, topic, settings_.router.max_subscriptions)) {
                case SubscribeResult::subscribed:
                    r.changed = true;
                    note_topic(rec.id, topic, true, &indexed);
                    break;
                case SubscribeResult::already_subscribed: note_topic(rec.id, topic, true, &indexed); break;
                case SubscribeResult::limit_reached: r.error = protocol_errc::too_many_subscriptions; break;
                case SubscribeResult::not_found: r.error = protocol_errc::unknown_connection; break;
            }
        } catch (const std::exception&) {
            store_failed();
            r.error = protocol_errc::store_unavailable;
        }
    }
    if (listens && !indexed) bus_unlisten({BusRoute::topic(topic)});
    return r;
}

WSGATE_INLINE SubscriptionResult Gateway::unsubscribe(const ConnectionId& id, const std::string& topic) {
    SubscriptionResult r;
    const TopicRule* rule = rule_for(topic);
    bool told = false;
    bool unindexed = false;
    {
        const auto local = local_of(id);
        std::unique_lock<std::mutex> order;
        if (local) order = std::unique_lock<std::mutex>(local->subs_mu);
        try {
            r.changed = store_->unsubscribe(id, topic);
            told = true;
            note_topic(id, topic, false, &unindexed);
        } catch (const std::exception&) {
            store_failed();
            r.error = protocol_errc::store_unavailable;
        }
    }
    if (unindexed) bus_unlisten({BusRoute::topic(topic)});
    try {
        if (told && r.changed && rule != nullptr && rule->presence_events)
            if (auto rec = store_->get(id)) announce("leave", topic, *rec);
    } catch (const std::exception&) {
        store_failed();
    }
    if (auto local = local_of(id)) {
        std::lock_guard lock(local->mu);
        if (local->close_gate(topic) && local->gated.exchange(false))
            gated_.fetch_sub(1, std::memory_order_relaxed);
    }
    return r;
}

WSGATE_INLINE std::vector<std::string> Gateway::drop_unreadable(const ConnectionId& id, const Principal& p) {
    std::vector<std::string> dropped;
    std::vector<BusRoute> released;  // index entries removed: their bus interest goes, after the locks
    const auto local = local_of(id);
    {
        std::unique_lock<std::mutex> order;
        if (local) order = std::unique_lock<std::mutex>(local->subs_mu);
        try {
            for (auto& topic : store_->topics_of(id)) {
                if (may_read(p, topic)) continue;
                store_->unsubscribe(id, topic);
                bool unindexed = false;
                note_topic(id, topic, false, &unindexed);
                if (unindexed) released.push_back(BusRoute::topic(topic));
                dropped.push_back(std::move(topic));
            }
        } catch (const std::exception&) {
            store_failed();
        }
        // Whatever the store answered, the node's own copy and its index keep no topic the
        // principal cannot read (local delivery resolves from them).
        if (local) {
            std::unique_lock index_lock(local_mu_);
            std::lock_guard lock(local->mu);
            auto& topics = local->rec.topics;
            for (auto it = topics.begin(); it != topics.end();) {
                if (may_read(p, *it)) {
                    ++it;
                    continue;
                }
                if (std::find(dropped.begin(), dropped.end(), *it) == dropped.end()) dropped.push_back(*it);
                // Removing only: a connection finish() took out of the index meanwhile stays out.
                if (LocalIndex::remove(index_->topics, *it, local.get())) released.push_back(BusRoute::topic(*it));
                it = topics.erase(it);
            }
        }
    }
    bus_unlisten(released);
    return dropped;
}

// ---- fan-out ----------------------------------------------------------------------------

WSGATE_INLINE Audience Gateway::with_topic_permission(const Audience& a) const {
    if (a.kind != Audience::Kind::topic || !a.required_permission.empty()) return a;
    Audience out = a;
    out.required_permission = read_permission(a.topic_name);
    return out;
}

WSGATE_INLINE BroadcastReport Gateway::publish(const Envelope& e, const Audience& a) {
    const auto now = clock_->now();
    const TopicRule* stream = nullptr;
    if (a.kind == Audience::Kind::topic)
        if (const TopicRule* rule = rule_for(a.topic_name); rule && rule->history_size > 0) stream = rule;
    std::string body;
    try {
        auto j = e.to_json(now);
        // A topic publish names its topic unless the host named one (explicitly or as a field).
        if (a.kind == Audience::Kind::topic && !j.contains("topic")) j["topic"] = a.topic_name;
        if (stream != nullptr) {
            // The store gives the position; whatever the host set is not it.
            j.erase("offset");
            j.erase("epoch");
        }
        body = j.dump();
    } catch (const std::exception&) {
        bump(metrics_.send_failures);
        return {};
    }
    Payload payload;
    std::uint64_t offset = 0;
    bool unpositioned = false;
    if (stream != nullptr) {
        try {
            const StreamPosition pos = store_->append(a.topic_name, body, now, retention_of(*stream));
            offset = pos.offset;
            payload = make_payload(with_position(body, pos));
        } catch (const std::exception&) {
            // Delivered live without a position: receivers cannot recover it, which their next
            // recovery reports as a gap only if history moved on without it.
            store_failed();
            unpositioned = true;
        }
    }
    if (!payload) payload = make_payload(std::move(body));
    auto report = fan_out(payload, with_topic_permission(a), offset);
    report.offset = offset;
    if (unpositioned) report.degrade("history_unavailable");
    if (report.degraded) bump(metrics_.degraded_publishes);
    return report;
}

WSGATE_INLINE BroadcastReport Gateway::fan_out(const Payload& payload, const Audience& audience, std::uint64_t offset) {
    if (bus_) {
        bool ok = false;
        try {
            BusMessage m{settings_.node_id, audience, *payload};
            m.offset = offset;
            ok = bus_->publish(m);
        } catch (const std::exception&) {
            ok = false;
        }
        if (!ok) bus_failed();
        auto report = deliver_local(payload, audience, offset);
        if (!ok) report.degrade("bus_unavailable");
        return report;
    }
    return deliver_local(payload, audience, offset);
}

WSGATE_INLINE BroadcastReport Gateway::send_to_user(const std::string& user_id, const Envelope& e, std::string except_device) {
    auto a = Audience::user(user_id);
    if (!except_device.empty()) a.except_device(std::move(except_device));
    return publish(e, a);
}

namespace detail {

/// What a fan-out resolves into, kept per thread so that the ids' storage serves the next
/// publish. A delivery that starts another on the same thread (a `gone` connection's leave
/// announcement) takes the next one of the thread's stack.
struct DeliveryScratch {
    ResolvedAudience resolved;
    std::vector<SendStatus> statuses;

    class Lease {
    public:
        Lease() {
            auto& s = stack();
            if (s.depth == s.items.size()) s.items.push_back(std::make_unique<DeliveryScratch>());
            item_ = s.items[s.depth++].get();
        }
        ~Lease() { --stack().depth; }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        DeliveryScratch* operator->() const noexcept { return item_; }

    private:
        struct Stack {
            std::vector<std::unique_ptr<DeliveryScratch>> items;
            std::size_t depth = 0;
        };
        static Stack& stack() noexcept {
            thread_local Stack s;
            return s;
        }
        DeliveryScratch* item_;
    };
};

}  // namespace detail

WSGATE_INLINE BroadcastReport Gateway::deliver_local(const Payload& payload, const Audience& a, std::uint64_t offset) {
    const auto started = std::chrono::steady_clock::now();
    BroadcastReport report;
    // Reused from publish to publish on this thread: no allocation per connection.
    detail::DeliveryScratch::Lease scratch;
    ResolvedAudience& resolved = scratch->resolved;
    // Connections that recovered this topic take each positioned publication through their gate.
    // Whether a member is gated is read after the audience was resolved, never before: a
    // recovering subscriber closes its gate before its subscription takes effect, so once the
    // subscription is seen here, so is the gate (read earlier, a publication the replay also
    // carries would go out ungated, twice).
    GatedList gated;
    const bool positioned = offset > 0 && a.kind == Audience::Kind::topic;
    if (local_only_) {
        // This node delivers to its own connections only, so its own index is the whole answer:
        // no store call per publish, and a store outage costs no local delivery.
        resolve_local_into(a, positioned ? &gated : nullptr, resolved);
    } else {
        bool fell_back = false;
        try {
            store_->resolve_into(a, resolved);
        } catch (const std::exception&) {
            store_failed();
            // The store is the index here (any process reaches every connection): without it
            // only this node's own connections are reached, from its index.
            resolve_local_into(a, positioned ? &gated : nullptr, resolved);
            fell_back = true;
            bump(metrics_.local_fallbacks);
            report.degrade("store_unavailable");
        }
        if (positioned && !fell_back && gated_.load(std::memory_order_acquire) > 0) {
            auto& ids = resolved.ids;
            std::shared_lock lock(local_mu_);
            ids.erase(std::remove_if(ids.begin(), ids.end(),
                                     [&](const ConnectionId& id) {
                                         auto it = local_.find(id);
                                         if (it == local_.end() || !it->second->gated.load(std::memory_order_relaxed))
                                             return false;
                                         gated.emplace_back(id, it->second);
                                         return true;
                                     }),
                      ids.end());
        }
    }
    report.filtered = resolved.filtered;
    auto& ids = resolved.ids;
    report.targets = ids.size() + gated.size() + report.filtered;
    auto& statuses = scratch->statuses;
    statuses.assign(ids.size(), SendStatus::error);
    try {
        transport_->send_many(ids, payload, statuses);
    } catch (const std::exception&) {
        std::fill(statuses.begin(), statuses.end(), SendStatus::error);
    }
    for (auto& [id, local] : gated) {
        ids.push_back(id);
        statuses.push_back(send_gated(*local, id, a.topic_name, offset, payload));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        switch (statuses[i]) {
            case SendStatus::ok: ++report.delivered; break;
            case SendStatus::gone:
                // Removed at once; fan-out to the rest goes on.
                if (end(ids[i], EndReason::gone)) bump(metrics_.gone_cleanups);
                ++report.gone_removed;
                break;
            case SendStatus::backpressure: ++report.backpressured; break;
            case SendStatus::error: ++report.failed; break;
        }
    }
    bump(metrics_.broadcasts);
    bump(metrics_.deliveries, report.delivered);
    bump(metrics_.messages_out, report.delivered);
    bump(metrics_.bytes_out, report.delivered * payload->size());
    if (report.backpressured) bump(metrics_.backpressured, report.backpressured);
    if (report.failed) bump(metrics_.send_failures, report.failed);
    report.elapsed = std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - started);
    return report;
}

WSGATE_INLINE ResolvedAudience Gateway::resolve_local(const Audience& a, GatedList* gated) const {
    ResolvedAudience out;
    resolve_local_into(a, gated, out);
    return out;
}

WSGATE_INLINE void Gateway::resolve_local_into(const Audience& a, GatedList* gated, ResolvedAudience& out) const {
    out.reset();
    // Without exclusions or a permission every selected connection is admitted: no record is read.
    const bool unfiltered = a.excluded_connection.empty() && a.excluded_device.empty() && a.required_permission.empty();
    std::shared_lock lock(local_mu_);
    auto consider = [&](Local& local) {
        // Ending: its reaper won, and finish() takes it out of the index next.
        if (local.ended.load(std::memory_order_relaxed)) return;
        if (!unfiltered) {
            std::lock_guard l(local.mu);  // a token refresh may be replacing the principal
            if (!a.admits(local.rec)) {
                ++out.filtered;
                return;
            }
        }
        if (gated != nullptr && local.gated.load(std::memory_order_acquire)) gated->emplace_back(local.rec.id, local.shared_from_this());
        else out.add_id(local.rec.id);
    };
    auto consider_all = [&](const LocalIndex::Members& members) {
        for (Local* local : members) consider(*local);
    };
    switch (a.kind) {
        case Audience::Kind::everyone:
            out.ids.reserve(local_.size());
            for (const auto& [id, local] : local_) consider(*local);
            break;
        case Audience::Kind::topic:
            if (auto it = index_->topics.find(a.topic_name); it != index_->topics.end()) {
                out.ids.reserve(it->second.size());
                consider_all(it->second);
            }
            break;
        case Audience::Kind::user:
        case Audience::Kind::users:
            // A connection has one user: distinct users never select it twice.
            for (const auto& user : detail::unique_users(a))
                if (auto it = index_->users.find(user); it != index_->users.end()) consider_all(it->second);
            break;
        case Audience::Kind::connections: {
            std::unordered_set<std::string_view> seen;
            for (const auto& id : a.connection_ids) {
                if (!seen.insert(id).second) continue;  // named twice, sent once
                if (auto it = local_.find(id); it != local_.end()) consider(*it->second);
            }
            break;
        }
    }
}

WSGATE_INLINE SendStatus Gateway::send_gated(Local& local, const ConnectionId& id, const std::string& topic,
                                            std::uint64_t offset, const Payload& payload) {
    std::lock_guard lock(local.mu);
    if (auto* g = local.gate(topic)) {
        auto& gate = *g;
        // The replay sent it already: not sent twice. Counted as delivered, which it was.
        if (offset <= gate.replayed) return SendStatus::ok;
        if (gate.replaying) {
            gate.held.emplace_back(offset, payload);
            return SendStatus::ok;
        }
    }
    try {
        return transport_->send(id, payload);
    } catch (const std::exception&) {
        return SendStatus::error;
    }
}

// ---- delivery guarantees: recovery, history, cursors, presence ----------------------------

WSGATE_INLINE HistoryRetention Gateway::retention_of(const TopicRule& r) noexcept {
    return HistoryRetention{r.history_size, r.history_ttl};
}

WSGATE_INLINE TimePoint Gateway::not_before(const TopicRule& r, TimePoint now) noexcept {
    return r.history_ttl.count() > 0 ? now - r.history_ttl : TimePoint::min();
}

WSGATE_INLINE std::string Gateway::device_key(const Principal& p) {
    if (p.device_id.empty()) return {};
    // The user id's length keeps ("a:b", "c") and ("a", "b:c") apart.
    return std::string{to_string(p.kind)} + ":" + std::to_string(p.user_id.size()) + ":" + p.user_id + ":" + p.device_id;
}

WSGATE_INLINE SubscriptionResult Gateway::subscribe(const ConnectionRecord& rec, const std::string& topic,
                                                   const SubscribeOptions& o) {
    auto ready = [&](SubscriptionResult& r) -> SubscriptionResult& {
        if (o.before_replay) o.before_replay(r);
        return r;
    };
    const TopicRule* rule = rule_for(topic);
    if (rule == nullptr || rule->history_size == 0) {
        auto r = subscribe(rec, topic);
        if (r.changed && rule != nullptr && rule->presence_events) announce("join", topic, rec);
        return ready(r);
    }
    SubscriptionResult r;
    if (!may_read(rec.principal, topic)) {
        r.error = protocol_errc::forbidden;
        return ready(r);
    }
    const auto now = clock_->now();
    // Where to resume from: the client's position, else the device's cursor.
    std::optional<StreamPosition> since = o.since;
    if (since) {
        r.recovery.from = "since";
    } else if (rule->device_cursors) {
        if (const auto key = device_key(rec.principal); !key.empty()) {
            try {
                since = store_->load_cursor(key, topic, now);
            } catch (const std::exception&) {
                store_failed();
            }
            if (since) r.recovery.from = "cursor";
        }
    }
    r.recovery.attempted = since.has_value();
    auto local = local_of(rec.id);
    // The gate closes before the subscription takes effect, so every live publication from then
    // on is held until the replay is out.
    bool new_gate = false;
    const bool gated = since && local;
    if (gated) {
        std::lock_guard lock(local->mu);
        local->open_gate(topic, &new_gate).replaying = true;
        if (!local->gated.exchange(true)) gated_.fetch_add(1, std::memory_order_relaxed);
    }
    auto reopen = [&] {
        if (!gated) return;
        std::lock_guard lock(local->mu);
        bool none_left = !local->gates;
        if (new_gate) none_left = local->close_gate(topic);
        else if (auto* g = local->gate(topic)) g->replaying = false;
        if (none_left && local->gated.exchange(false)) gated_.fetch_sub(1, std::memory_order_relaxed);
    };
    auto plain = subscribe(rec, topic);
    r.error = plain.error;
    r.changed = plain.changed;
    if (r.error) {
        reopen();
        return ready(r);
    }
    // Read after subscribing: whatever was appended before this read is in it, whatever after
    // reaches the connection live.
    StreamRead read;
    try {
        read = store_->read_stream(topic, since ? since->offset : 0, since ? rule->history_size : 0,
                                   not_before(*rule, now));
        r.position = read.top;
    } catch (const std::exception&) {
        store_failed();
        if (since) r.recovery.reason = "store_unavailable";
        since.reset();
    }
    if (since) {
        // A client at offset 0 has seen nothing: any epoch will do if the history starts at 1.
        if (since->offset == 0) {
            if (read.first_retained <= 1) r.recovery.recovered = true;
            else r.recovery.reason = "too_old";
        } else if (since->epoch != read.top.epoch) r.recovery.reason = "epoch_changed";
        else if (since->offset > read.top.offset) r.recovery.reason = "unknown_position";
        else if (since->offset < read.top.offset && since->offset + 1 < read.first_retained) r.recovery.reason = "too_old";
        else r.recovery.recovered = true;
    }
    if (!r.recovery.recovered) read.publications.clear();
    r.recovery.missed = read.publications.size();
    ready(r);
    if (r.changed && rule->presence_events) announce("join", topic, rec);

    // The replay, then what was held meanwhile, in offset order and each once.
    std::vector<Payload> frames;
    frames.reserve(read.publications.size());
    for (const auto& p : read.publications)
        frames.push_back(make_payload(with_position(p.body, StreamPosition{p.offset, read.top.epoch})));
    SendStatus failed = SendStatus::ok;
    auto send = [&](const Payload& frame) {
        if (failed != SendStatus::ok) return;
        SendStatus s = SendStatus::error;
        try {
            s = transport_->send(rec.id, frame);
        } catch (const std::exception&) {
        }
        if (s == SendStatus::ok) {
            bump(metrics_.messages_out);
            bump(metrics_.bytes_out, frame->size());
        } else {
            failed = s;
        }
    };
    if (gated) {
        std::lock_guard lock(local->mu);
        auto& gate = local->open_gate(topic);
        // The client holds everything up to its position: live ones up to it are duplicates too.
        std::uint64_t replayed = std::max(gate.replayed, r.recovery.recovered ? since->offset : 0);
        for (std::size_t i = 0; i < frames.size(); ++i) {
            if (read.publications[i].offset <= replayed) continue;
            send(frames[i]);
            replayed = read.publications[i].offset;
        }
        std::sort(gate.held.begin(), gate.held.end(),
                  [](const auto& x, const auto& y) { return x.first < y.first; });
        for (const auto& [offset, frame] : gate.held)
            if (offset > replayed) send(frame);
        gate.held.clear();
        gate.replayed = replayed;
        gate.replaying = false;
    } else {
        for (const auto& frame : frames) send(frame);
    }
    bump(metrics_.replayed, r.recovery.missed);
    if (r.recovery.attempted) bump(r.recovery.recovered ? metrics_.recoveries : metrics_.recoveries_failed);
    // A replay cut short leaves a gap the client cannot see: the connection ends, and the client
    // recovers again from the last position it received.
    if (failed == SendStatus::gone) end(rec.id, EndReason::gone);
    else if (failed != SendStatus::ok) end(rec.id, EndReason::backpressure, "replay overflowed the send queue");
    return r;
}

WSGATE_INLINE HistoryResult Gateway::history(const Principal& p, const std::string& topic, std::size_t limit) {
    HistoryResult out;
    const TopicRule* rule = rule_for(topic);
    if (!may_read(p, topic)) {
        out.error = protocol_errc::forbidden;
        return out;
    }
    if (rule == nullptr || rule->history_size == 0) {
        out.error = protocol_errc::history_off;
        return out;
    }
    if (limit == 0 || limit > rule->history_size) limit = rule->history_size;
    try {
        auto read = store_->latest(topic, limit, not_before(*rule, clock_->now()));
        out.position = read.top;
        out.frames.reserve(read.publications.size());
        for (const auto& pub : read.publications)
            out.frames.push_back(with_position(pub.body, StreamPosition{pub.offset, read.top.epoch}));
    } catch (const std::exception&) {
        store_failed();
        out.error = protocol_errc::store_unavailable;
    }
    return out;
}

WSGATE_INLINE std::error_code Gateway::acknowledge(const ConnectionRecord& rec, const std::string& topic,
                                                   const StreamPosition& p) {
    if (!may_read(rec.principal, topic)) return protocol_errc::forbidden;
    const TopicRule* rule = rule_for(topic);
    const auto key = device_key(rec.principal);
    if (rule == nullptr || !rule->device_cursors || key.empty()) return protocol_errc::cursors_off;
    const auto now = clock_->now();
    try {
        const auto top = store_->read_stream(topic, 0, 0, not_before(*rule, now)).top;
        if ((!p.epoch.empty() && p.epoch != top.epoch) || p.offset > top.offset) return protocol_errc::bad_position;
        // Offset 0 acknowledges nothing: no cursor is written, so naming topics costs no storage.
        if (p.offset > 0) store_->save_cursor(key, topic, StreamPosition{p.offset, top.epoch}, now, rule->cursor_ttl);
    } catch (const std::exception&) {
        store_failed();
        return protocol_errc::store_unavailable;
    }
    return {};
}

WSGATE_INLINE PresenceResult Gateway::presence(const Principal& p, const std::string& topic) {
    PresenceResult out;
    if (!may_read(p, topic)) {
        out.error = protocol_errc::forbidden;
        return out;
    }
    const TopicRule* rule = rule_for(topic);
    if (rule == nullptr || !rule->presence) {
        out.error = protocol_errc::presence_off;
        return out;
    }
    std::vector<PresenceMember> members;
    try {
        members = store_->presence(topic);
    } catch (const std::exception&) {
        store_failed();
        out.error = protocol_errc::store_unavailable;
        return out;
    }
    std::map<std::tuple<PrincipalKind, std::string, std::string>, std::size_t> by_member;
    std::set<std::string> users;
    for (auto& m : members) {
        ++by_member[{m.kind, std::move(m.user_id), std::move(m.device_id)}];
    }
    out.connections = members.size();
    for (auto& [key, count] : by_member) {
        const auto& [kind, user, device] = key;
        if (!user.empty()) users.insert(user);
        out.members.push_back(PresenceEntry{kind, user, device, count});
    }
    out.users = users.size();
    return out;
}

WSGATE_INLINE void Gateway::announce(const std::string& type, const std::string& topic, const ConnectionRecord& member) {
    nlohmann::json who{{"kind", std::string{to_string(member.principal.kind)}}};
    if (!member.principal.user_id.empty()) who["userId"] = member.principal.user_id;
    if (!member.principal.device_id.empty()) who["deviceId"] = member.principal.device_id;
    try {
        auto j = Envelope{type}.topic(topic).field("member", std::move(who)).to_json(clock_->now());
        auto audience = Audience::topic(topic);
        audience.except_sender(member);
        // Not a publication of the topic's stream: no offset, not in its history.
        fan_out(make_payload(j.dump()), with_topic_permission(audience), 0);
    } catch (const std::exception&) {
        bump(metrics_.send_failures);
    }
}

}  // namespace wsgate
