#include "client.hpp"

#include <wsgate/error.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace wsgate::dynamodb_detail {
namespace {

bool is_throttling(std::string_view type) noexcept {
    return type == "ProvisionedThroughputExceededException" || type == "ThrottlingException" ||
           type == "RequestLimitExceeded";
}

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
}

// Invalid UTF-8 in a principal or attribute is stored with U+FFFD instead of failing the write.
std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// `host` or `host:port` names this machine: 127.0.0.0/8, localhost, or [::1].
bool is_loopback_host(std::string_view host_port) {
    std::string_view host = host_port;
    if (host.starts_with('[')) {
        const auto close = host.find(']');
        return close != std::string_view::npos && host.substr(1, close - 1) == "::1";
    }
    if (const auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
    if (host == "localhost") return true;
    if (!host.starts_with("127.")) return false;
    int dots = 0;
    for (char c : host) {
        if (c == '.') ++dots;
        else if (c < '0' || c > '9') return false;
    }
    return dots == 3;
}

}  // namespace

Client::Client(const DynamoDbStoreSettings& s)
    : table_(s.table), credentials_(s.credentials), http_(s.http), retry_(s.retry) {
    if (table_.empty()) throw std::invalid_argument("wsgate::DynamoDbConnectionStore: the table name is empty");
    if (retry_.max_attempts < 1) retry_.max_attempts = 1;
    region_ = s.region;
    if (region_.empty()) region_ = env("AWS_REGION");
    if (region_.empty()) region_ = env("AWS_DEFAULT_REGION");
    if (region_.empty()) region_ = "us-east-1";
    const std::string endpoint = s.endpoint.empty() ? "https://dynamodb." + region_ + ".amazonaws.com" : s.endpoint;
    const auto sep = endpoint.find("://");
    if (sep == std::string::npos || sep == 0)
        throw std::invalid_argument("wsgate::DynamoDbConnectionStore: endpoint '" + endpoint +
                                    "' is not an http:// or https:// URL");
    scheme_ = endpoint.substr(0, sep);
    if (scheme_ != "http" && scheme_ != "https")
        throw std::invalid_argument("wsgate::DynamoDbConnectionStore: endpoint '" + endpoint +
                                    "' is not an http:// or https:// URL");
    const auto rest = endpoint.substr(sep + 3);
    const auto slash = rest.find('/');
    host_ = rest.substr(0, slash);
    path_ = slash == std::string::npos ? "/" : rest.substr(slash);
    if (host_.empty()) throw std::invalid_argument("wsgate::DynamoDbConnectionStore: endpoint '" + endpoint + "' has no host");
    if (scheme_ == "http" && !s.allow_plain_http && !is_loopback_host(host_))
        throw std::invalid_argument("wsgate::DynamoDbConnectionStore: endpoint '" + endpoint +
                                    "' is plain http:// to a host that is not loopback; use https://, or set "
                                    "allow_plain_http (spec: insecure=1) for a local server on another host");
    if (!http_) http_ = std::make_shared<aws::CurlHttpClient>();
}

DynamoDbStats Client::stats() const noexcept {
    DynamoDbStats s;
    s.requests = requests_.load(std::memory_order_relaxed);
    s.throttled_retries = throttled_retries_.load(std::memory_order_relaxed);
    s.unprocessed_retries = unprocessed_retries_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    return s;
}

void Client::backoff(int attempt) const {
    // Full jitter: uniform in [0, min(cap, base * 2^(attempt - 1))], attempt 1 being the first retry.
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const auto base = std::max<std::int64_t>(0, retry_.base.count());
    const auto cap = std::max<std::int64_t>(0, retry_.cap.count());
    const auto ceiling = std::min<std::int64_t>(cap, base << std::clamp(attempt - 1, 0, 20));
    if (ceiling <= 0) return;
    std::uniform_int_distribution<std::int64_t> pick(0, ceiling);
    std::this_thread::sleep_for(std::chrono::milliseconds{pick(rng)});
}

void Client::fail(std::string_view op, const Reply& r) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    store_errc code = store_errc::io_error;
    if (r.error == "ValidationException") code = store_errc::invalid_argument;
    else if (is_throttling(r.error) || r.error == "NoResponse" || r.error.starts_with("HTTP 5") ||
             r.error == "InternalServerError" || r.error == "ServiceUnavailable" || r.error == "MissingCredentials")
        code = store_errc::unavailable;
    std::string what = "wsgate dynamodb (table " + table_ + "): " + std::string(op) + " failed: " + r.error;
    if (!r.message.empty()) what += ": " + r.message;
    throw StoreError(code, what);
}

std::vector<Reply> Client::call_many(std::string_view op, std::vector<Json> bodies,
                                     std::initializer_list<std::string_view> accepted) {
    const bool batch = op.starts_with("Batch");
    std::vector<std::string> texts;
    texts.reserve(bodies.size());
    for (auto& b : bodies) {
        if (!batch && !b.contains("TableName")) b["TableName"] = table_;
        name_attributes(b);
        texts.push_back(dump(b));
    }
    std::vector<Reply> out(bodies.size());
    std::vector<std::size_t> pending(bodies.size());
    for (std::size_t i = 0; i < pending.size(); ++i) pending[i] = i;
    const std::string target = "DynamoDB_20120810." + std::string(op);

    for (int attempt = 0; !pending.empty(); ++attempt) {
        if (attempt > 0) {
            throttled_retries_.fetch_add(pending.size(), std::memory_order_relaxed);
            backoff(attempt);
        }
        // Credentials are read for every attempt: a Lambda's rotate under a long-lived store.
        std::optional<aws::Credentials> creds = credentials_ ? credentials_ : aws::Credentials::from_environment();
        if (!creds)
            fail(op, Reply{nullptr, "MissingCredentials",
                           "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                           "(and AWS_SESSION_TOKEN), or DynamoDbStoreSettings::credentials"});
        std::vector<aws::HttpRequest> requests(pending.size());
        const auto now = std::chrono::system_clock::now();  // signing needs real time, not the store's clock
        for (std::size_t k = 0; k < pending.size(); ++k) {
            auto& req = requests[k];
            req.method = "POST";
            req.scheme = scheme_;
            req.host = host_;
            req.path = path_;
            req.headers = {{"Content-Type", "application/x-amz-json-1.0"}, {"X-Amz-Target", target}};
            req.body = texts[pending[k]];
            aws::sign_request(req, *creds, {region_, "dynamodb"}, now);
        }
        std::vector<aws::HttpResponse> responses(requests.size());
        http_->perform_many(requests, responses);
        requests_.fetch_add(requests.size(), std::memory_order_relaxed);

        std::vector<std::size_t> again;
        for (std::size_t k = 0; k < pending.size(); ++k) {
            const auto& resp = responses[k];
            Reply r;
            bool retry = false;
            if (resp.status == 0) {
                r.error = "NoResponse";
                r.message = resp.error.empty() ? "no answer from " + scheme_ + "://" + host_ : resp.error;
                retry = true;
            } else {
                auto j = Json::parse(resp.body, nullptr, false);
                if (resp.status == 200 && !j.is_discarded()) {
                    r.body = std::move(j);
                } else {
                    if (j.is_object()) {
                        if (auto t = j.find("__type"); t != j.end() && t->is_string()) {
                            const auto& type = t->get_ref<const std::string&>();
                            const auto hash = type.rfind('#');
                            r.error = hash == std::string::npos ? type : type.substr(hash + 1);
                        }
                        for (const char* m : {"message", "Message"})
                            if (auto it = j.find(m); it != j.end() && it->is_string()) r.message = it->get<std::string>();
                    }
                    if (r.error.empty()) {
                        r.error = "HTTP " + std::to_string(resp.status);
                        if (r.message.empty()) r.message = resp.body.substr(0, 200);
                    }
                    retry = resp.status >= 500 || is_throttling(r.error);
                }
            }
            if (retry && attempt + 1 < retry_.max_attempts) {
                again.push_back(pending[k]);
                continue;
            }
            if (!r.ok() && std::find(accepted.begin(), accepted.end(), r.error) == accepted.end()) {
                if (retry) r.message += " (after " + std::to_string(attempt + 1) + " attempts)";
                fail(op, r);
            }
            out[pending[k]] = std::move(r);
        }
        pending = std::move(again);
    }
    return out;
}

Reply Client::call(std::string_view op, Json body, std::initializer_list<std::string_view> accepted) {
    std::vector<Json> one;
    one.push_back(std::move(body));
    return std::move(call_many(op, std::move(one), accepted).front());
}

std::vector<Json> Client::batch_get(const std::vector<Json>& keys, const std::string& projection, const Json& names) {
    std::vector<Json> items;
    std::vector<Json> left = keys;
    for (int attempt = 0; !left.empty(); ++attempt) {
        if (attempt > 0) {
            if (attempt >= retry_.max_attempts)
                fail("BatchGetItem", Reply{nullptr, "UnprocessedKeys",
                                           std::to_string(left.size()) + " keys still unprocessed after " +
                                               std::to_string(attempt) + " attempts"});
            unprocessed_retries_.fetch_add(1, std::memory_order_relaxed);
            backoff(attempt);
        }
        std::vector<Json> bodies;
        for (std::size_t i = 0; i < left.size(); i += 100) {
            Json spec{{"Keys", Json::array()}, {"ConsistentRead", true}};
            for (std::size_t k = i; k < std::min(left.size(), i + 100); ++k) spec["Keys"].push_back(left[k]);
            if (!projection.empty()) spec["ProjectionExpression"] = projection;
            if (!names.is_null()) spec["ExpressionAttributeNames"] = names;
            else name_attributes(spec);
            bodies.push_back(Json{{"RequestItems", Json{{table_, std::move(spec)}}}});
        }
        left.clear();
        for (auto& r : call_many("BatchGetItem", std::move(bodies))) {
            if (auto it = r.body.find("Responses"); it != r.body.end())
                if (auto t = it->find(table_); t != it->end())
                    for (auto& item : *t) items.push_back(std::move(item));
            if (auto it = r.body.find("UnprocessedKeys"); it != r.body.end())
                if (auto t = it->find(table_); t != it->end())
                    if (auto k = t->find("Keys"); k != t->end())
                        for (auto& key : *k) left.push_back(std::move(key));
        }
    }
    return items;
}

void Client::batch_write(const std::vector<Json>& requests) {
    // One key at most once per call (DynamoDB refuses duplicates): the last request for a key wins.
    std::vector<Json> left;
    {
        std::unordered_map<std::string, std::size_t> at;
        for (const auto& r : requests) {
            const Json* key = nullptr;
            if (auto p = r.find("PutRequest"); p != r.end()) key = &(*p)["Item"];
            else if (auto d = r.find("DeleteRequest"); d != r.end()) key = &(*d)["Key"];
            if (key == nullptr) continue;
            const std::string id = dump((*key)["pk"]) + dump((*key)["sk"]);
            if (auto it = at.find(id); it != at.end()) {
                left[it->second] = r;
            } else {
                at.emplace(id, left.size());
                left.push_back(r);
            }
        }
    }
    for (int attempt = 0; !left.empty(); ++attempt) {
        if (attempt > 0) {
            if (attempt >= retry_.max_attempts)
                fail("BatchWriteItem", Reply{nullptr, "UnprocessedItems",
                                             std::to_string(left.size()) + " items still unprocessed after " +
                                                 std::to_string(attempt) + " attempts"});
            unprocessed_retries_.fetch_add(1, std::memory_order_relaxed);
            backoff(attempt);
        }
        std::vector<Json> bodies;
        for (std::size_t i = 0; i < left.size(); i += 25) {
            Json batch = Json::array();
            for (std::size_t k = i; k < std::min(left.size(), i + 25); ++k) batch.push_back(std::move(left[k]));
            bodies.push_back(Json{{"RequestItems", Json{{table_, std::move(batch)}}}});
        }
        left.clear();
        for (auto& r : call_many("BatchWriteItem", std::move(bodies)))
            if (auto it = r.body.find("UnprocessedItems"); it != r.body.end())
                if (auto t = it->find(table_); t != it->end())
                    for (auto& item : *t) left.push_back(std::move(item));
    }
}

void Client::paginate(std::string_view op, Json body, const std::function<bool(const Json&)>& page) {
    while (true) {
        auto r = call(op, body);
        if (!page(r.body)) return;
        auto lek = r.body.find("LastEvaluatedKey");
        if (lek == r.body.end() || lek->empty()) return;
        body["ExclusiveStartKey"] = std::move(*lek);
    }
}

void name_attributes(Json& request) {
    if (request.contains("ExpressionAttributeNames")) return;
    Json names = Json::object();
    for (const char* field : {"ConditionExpression", "UpdateExpression", "FilterExpression", "KeyConditionExpression",
                              "ProjectionExpression"}) {
        auto it = request.find(field);
        if (it == request.end() || !it->is_string()) continue;
        const auto& e = it->get_ref<const std::string&>();
        for (std::size_t i = 0; i < e.size(); ++i) {
            if (e[i] != '#') continue;
            std::size_t j = i + 1;
            while (j < e.size() && (std::isalnum(static_cast<unsigned char>(e[j])) != 0 || e[j] == '_')) ++j;
            if (j > i + 1) names[e.substr(i, j - i)] = e.substr(i + 1, j - i - 1);
            i = j - 1;
        }
    }
    if (!names.empty()) request["ExpressionAttributeNames"] = std::move(names);
}

std::string str_attr(const Json& item, const char* name, std::string fallback) {
    auto it = item.find(name);
    if (it == item.end() || !it->is_object()) return fallback;
    if (auto s = it->find("S"); s != it->end() && s->is_string()) return s->get<std::string>();
    if (auto n = it->find("N"); n != it->end() && n->is_string()) return n->get<std::string>();
    return fallback;
}

std::int64_t num_attr(const Json& item, const char* name, std::int64_t fallback) {
    auto it = item.find(name);
    if (it == item.end() || !it->is_object()) return fallback;
    auto n = it->find("N");
    if (n == it->end() || !n->is_string()) return fallback;
    const auto& text = n->get_ref<const std::string&>();
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    return ec == std::errc{} && p == text.data() + text.size() ? v : fallback;
}

}  // namespace wsgate::dynamodb_detail
