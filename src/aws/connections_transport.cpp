// API Gateway @connections transport: signed POST / DELETE / GET, 410 → Gone, bounded retries.
#include <wsgate/aws/connections_transport.hpp>
#include <wsgate/aws/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace wsgate::aws {
namespace {

bool retryable(int status) { return status == 0 || status == 429 || (status >= 500 && status <= 599); }

PostResult classify(int status, int attempts) {
    PostResult r;
    r.http_status = status;
    r.attempts = attempts;
    if (status >= 200 && status < 300) {
        r.status = SendStatus::ok;
    } else if (status == 410) {
        r.status = SendStatus::gone;
        r.error = transport_errc::gone;
    } else if (status == 403) {
        r.error = transport_errc::forbidden;
    } else if (status == 413) {
        r.error = transport_errc::too_large;
    } else if (status == 429) {
        r.error = transport_errc::throttled;
    } else {
        r.error = transport_errc::failed;
    }
    return r;
}

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string{v} : std::string{};
}

}  // namespace

std::optional<Endpoint> parse_endpoint(std::string_view url, std::error_code& ec) {
    ec.clear();
    Endpoint e;
    auto take = [&](std::string_view prefix) {
        if (url.size() >= prefix.size() && url.substr(0, prefix.size()) == prefix) {
            url.remove_prefix(prefix.size());
            return true;
        }
        return false;
    };
    if (take("wss://") || take("https://")) e.scheme = "https";
    else if (take("ws://") || take("http://")) e.scheme = "http";
    else if (url.find("://") != std::string_view::npos) {
        ec = config_errc::bad_endpoint;
        return std::nullopt;
    }
    const auto slash = url.find('/');
    e.host = std::string{url.substr(0, slash)};
    std::string_view rest = slash == std::string_view::npos ? std::string_view{} : url.substr(slash + 1);
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (const auto at = rest.find("/@connections"); at != std::string_view::npos) rest = rest.substr(0, at);
    if (rest == "@connections") rest = {};
    e.stage = std::string{rest};
    const bool bad_char = std::any_of(e.host.begin(), e.host.end(), [](unsigned char c) {
        return c <= ' ' || c == '@' || c == '?' || c == '#' || c == '/' || c >= 0x7f;
    });
    if (e.host.empty() || bad_char || e.stage.find_first_of("?# ") != std::string::npos) {
        ec = config_errc::bad_endpoint;
        return std::nullopt;
    }
    return e;
}

std::string region_from_host(std::string_view host) {
    constexpr std::string_view marker = ".execute-api.";
    const auto at = host.find(marker);
    if (at == std::string_view::npos) return {};
    const auto start = at + marker.size();
    const auto dot = host.find('.', start);
    if (dot == std::string_view::npos) return {};
    return std::string{host.substr(start, dot - start)};
}

ConnectionsTransport::ConnectionsTransport(ConnectionsSettings settings, std::shared_ptr<const Clock> clock)
    : settings_(std::move(settings)), clock_(std::move(clock)) {
    std::error_code ec;
    auto ep = parse_endpoint(settings_.endpoint, ec);
    if (!ep) throw std::invalid_argument("wsgate: invalid @connections endpoint '" + settings_.endpoint + "'");
    endpoint_ = std::move(*ep);
    region_ = settings_.region;
    if (region_.empty()) region_ = env("AWS_REGION");
    if (region_.empty()) region_ = env("AWS_DEFAULT_REGION");
    if (region_.empty()) region_ = region_from_host(endpoint_.host);
    if (region_.empty()) throw std::invalid_argument("wsgate: no AWS region for the @connections transport");
    if (settings_.credentials) credentials_ = *settings_.credentials;
    else if (auto c = Credentials::from_environment()) credentials_ = std::move(*c);
    else throw std::invalid_argument("wsgate: no AWS credentials for the @connections transport");
    if (settings_.max_retries < 0) settings_.max_retries = 0;
    http_ = settings_.http ? settings_.http : std::make_shared<CurlHttpClient>(settings_.curl);
    if (!clock_) clock_ = std::make_shared<SystemClock>();
}

HttpRequest ConnectionsTransport::make_request(std::string_view method, const ConnectionId& id, std::string body) const {
    HttpRequest r;
    r.method = std::string{method};
    r.scheme = endpoint_.scheme;
    r.host = endpoint_.host;
    r.path = (endpoint_.stage.empty() ? std::string{} : "/" + endpoint_.stage) + "/@connections/" + uri_encode(id, true);
    if (!body.empty()) r.headers.emplace_back("Content-Type", "application/json");
    r.body = std::move(body);
    sign_request(r, credentials_, SigningScope{region_, settings_.service}, clock_->now());
    return r;
}

void ConnectionsTransport::post_many(std::span<const ConnectionId> ids, std::string_view data, std::span<PostResult> out) {
    const std::size_t n = std::min(ids.size(), out.size());
    std::vector<std::size_t> pending(n);
    for (std::size_t i = 0; i < n; ++i) pending[i] = i;
    std::vector<int> attempts(n, 0);
    auto backoff = settings_.retry_base;
    for (int round = 0; !pending.empty(); ++round) {
        std::vector<HttpRequest> requests;
        requests.reserve(pending.size());
        for (auto i : pending) requests.push_back(make_request("POST", ids[i], std::string{data}));
        std::vector<HttpResponse> responses(requests.size());
        try {
            http_->perform_many(requests, responses);
        } catch (const std::exception& e) {
            for (auto& r : responses) r = failed_response(e.what());
        }
        std::vector<std::size_t> again;
        for (std::size_t k = 0; k < pending.size(); ++k) {
            const auto i = pending[k];
            ++attempts[i];
            const int status = responses[k].status;
            if (retryable(status) && round < settings_.max_retries) {
                again.push_back(i);
                continue;
            }
            out[i] = classify(status, attempts[i]);
        }
        stats_.posts += pending.size();
        stats_.retries += again.size();
        pending = std::move(again);
        if (!pending.empty()) {
            std::this_thread::sleep_for(backoff);
            backoff = std::min(backoff * 2, settings_.retry_max);
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        switch (out[i].status) {
            case SendStatus::ok: ++stats_.delivered; break;
            case SendStatus::gone: ++stats_.gone; break;
            default:
                if (out[i].error == transport_errc::forbidden) ++stats_.forbidden;
                else if (out[i].error == transport_errc::too_large) ++stats_.too_large;
                else if (out[i].error == transport_errc::throttled) ++stats_.throttled;
                else ++stats_.failed;
        }
    }
}

PostResult ConnectionsTransport::post(const ConnectionId& id, std::string_view data) {
    PostResult r;
    post_many(std::span<const ConnectionId>{&id, 1}, data, std::span<PostResult>{&r, 1});
    return r;
}

SendStatus ConnectionsTransport::send(const ConnectionId& id, const Payload& payload) {
    try {
        return post(id, payload ? std::string_view{*payload} : std::string_view{}).status;
    } catch (...) {
        return SendStatus::error;
    }
}

void ConnectionsTransport::send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) {
    try {
        std::vector<PostResult> results(ids.size());
        post_many(ids, payload ? std::string_view{*payload} : std::string_view{}, results);
        for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) out[i] = results[i].status;
    } catch (...) {
        for (auto& s : out) s = SendStatus::error;
    }
}

void ConnectionsTransport::close(const ConnectionId& id, CloseCode, std::string_view) {
    try {
        ++stats_.deletes;
        auto resp = http_->perform(make_request("DELETE", id, {}));
        for (int attempt = 0; retryable(resp.status) && attempt < settings_.max_retries; ++attempt) {
            std::this_thread::sleep_for(std::min(settings_.retry_base * (1 << attempt), settings_.retry_max));
            resp = http_->perform(make_request("DELETE", id, {}));
        }
    } catch (...) {
        // close() is best effort and idempotent: a connection that is already gone is closed.
    }
}

ConnectionInfo ConnectionsTransport::get_connection(const ConnectionId& id) {
    ConnectionInfo info;
    try {
        const auto resp = http_->perform(make_request("GET", id, {}));
        info.http_status = resp.status;
        const auto r = classify(resp.status, 1);
        info.error = r.error;
        if (resp.status == 200) {
            auto j = nlohmann::json::parse(resp.body, nullptr, false);
            if (j.is_object()) {
                info.connected_at = j.value("connectedAt", std::string{});
                info.last_active_at = j.value("lastActiveAt", std::string{});
                if (auto it = j.find("identity"); it != j.end() && it->is_object()) {
                    info.source_ip = it->value("sourceIp", std::string{});
                    info.user_agent = it->value("userAgent", std::string{});
                }
            }
        }
    } catch (const std::exception&) {
        info.error = transport_errc::failed;
    }
    return info;
}

}  // namespace wsgate::aws
