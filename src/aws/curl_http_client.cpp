// HttpClient over libcurl's multi interface: parallel transfers, connections kept between calls.
#include <wsgate/aws/http_client.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <strings.h>
#include <stdexcept>
#include <vector>

namespace wsgate::aws {
namespace {

struct GlobalInit {
    GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* out = static_cast<std::string*>(user);
    out->append(data, size * n);
    return size * n;
}

// Collects response headers; a new status line (after a 100 Continue or a redirect) starts over.
std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* out = static_cast<HttpResponse*>(user);
    std::string_view line{data, size * n};
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
    if (line.rfind("HTTP/", 0) == 0) {
        out->headers.clear();
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
        out->headers.emplace_back(std::string{line.substr(0, colon)}, std::string{value});
    }
    return size * n;
}

// One reusable transfer slot; curl_easy_reset() between transfers keeps the handle's caches.
struct Slot {
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::size_t index = 0;
    HttpResponse* out = nullptr;
    std::string body_in;
};

// One multi handle with its transfer slots; it owns its connection cache. Workers are pooled:
// a caller takes one (the most recently used, whose connections are warm), so concurrent callers
// never share curl state and never wait for each other.
struct Worker {
    CURLM* multi = nullptr;
    std::vector<Slot> slots;

    Worker(const CurlSettings& settings) {
        multi = curl_multi_init();
        if (!multi) throw std::runtime_error("wsgate: curl_multi_init failed");
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(settings.max_host_connections));
        curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(settings.max_host_connections));
        slots.resize(settings.max_concurrency);
    }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
    ~Worker() {
        for (auto& s : slots) {
            if (s.headers) curl_slist_free_all(s.headers);
            if (s.easy) curl_easy_cleanup(s.easy);
        }
        if (multi) curl_multi_cleanup(multi);
    }
};

}  // namespace

struct CurlHttpClient::Impl {
    std::mutex mu;
    std::vector<std::unique_ptr<Worker>> idle;
};

CurlHttpClient::CurlHttpClient(CurlSettings settings) : settings_(std::move(settings)), impl_(std::make_unique<Impl>()) {
    static GlobalInit init;
    if (settings_.max_concurrency == 0) throw std::invalid_argument("wsgate: CurlSettings.max_concurrency must be > 0");
    if (settings_.max_host_connections == 0) settings_.max_host_connections = settings_.max_concurrency;
    impl_->idle.push_back(std::make_unique<Worker>(settings_));
}

CurlHttpClient::~CurlHttpClient() = default;

HttpResponse CurlHttpClient::perform(const HttpRequest& request) {
    HttpResponse r;
    perform_many(std::span<const HttpRequest>{&request, 1}, std::span<HttpResponse>{&r, 1});
    return r;
}

void CurlHttpClient::perform_many(std::span<const HttpRequest> requests, std::span<HttpResponse> out) {
    const std::size_t n = std::min(requests.size(), out.size());
    if (n == 0) return;
    std::unique_ptr<Worker> worker;
    {
        std::lock_guard lock{impl_->mu};
        if (!impl_->idle.empty()) {
            worker = std::move(impl_->idle.back());
            impl_->idle.pop_back();
        }
    }
    try {
        if (!worker) worker = std::make_unique<Worker>(settings_);
    } catch (const std::exception& e) {
        for (std::size_t i = 0; i < n; ++i) out[i] = failed_response(e.what());
        return;
    }
    CURLM* multi = worker->multi;

    std::vector<Slot*> free_slots;
    for (auto& s : worker->slots) free_slots.push_back(&s);
    std::size_t next = 0, running_count = 0;

    auto start = [&](Slot& s, std::size_t i) {
        const HttpRequest& req = requests[i];
        out[i] = HttpResponse{};
        s.index = i;
        s.out = &out[i];
        if (!s.easy) s.easy = curl_easy_init();
        if (!s.easy) {
            s.out->error = "curl_easy_init failed";
            return false;
        }
        CURL* e = s.easy;
        curl_easy_reset(e);  // keeps the connection cache, DNS cache and session ids
        if (s.headers) {
            curl_slist_free_all(s.headers);
            s.headers = nullptr;
        }
        const std::string url = req.url();
        curl_easy_setopt(e, CURLOPT_URL, url.c_str());  // curl copies strings
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(settings_.connect_timeout.count()));
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(settings_.request_timeout.count()));
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &s.out->body);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, s.out);
        curl_easy_setopt(e, CURLOPT_USERAGENT, settings_.user_agent.c_str());
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        if (!settings_.verify_tls) {
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (req.method == "GET") {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        } else if (req.method == "POST") {
            s.body_in = req.body;
            curl_easy_setopt(e, CURLOPT_POST, 1L);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, s.body_in.data());
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(s.body_in.size()));
        } else {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
            if (req.method == "DELETE" || req.method == "HEAD") curl_easy_setopt(e, CURLOPT_NOBODY, req.method == "HEAD" ? 1L : 0L);
            if (!req.body.empty()) {
                s.body_in = req.body;
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, s.body_in.data());
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(s.body_in.size()));
            }
        }
        bool has_type = false;
        for (const auto& [name, value] : req.headers) {
            const std::string line = name + ": " + value;
            s.headers = curl_slist_append(s.headers, line.c_str());
            if (name.size() == 12 && strncasecmp(name.c_str(), "content-type", 12) == 0) has_type = true;
        }
        // No implicit form content type, no "Expect: 100-continue" round trip.
        if (!has_type) s.headers = curl_slist_append(s.headers, "Content-Type:");
        s.headers = curl_slist_append(s.headers, "Expect:");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, s.headers);
        curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&s));
        if (curl_multi_add_handle(multi, e) != CURLM_OK) {
            s.out->error = "curl_multi_add_handle failed";
            return false;
        }
        return true;
    };

    auto fill = [&] {
        while (next < n && !free_slots.empty()) {
            Slot* s = free_slots.back();
            free_slots.pop_back();
            if (start(*s, next++)) ++running_count;
            else free_slots.push_back(s);
        }
    };

    fill();
    while (running_count > 0) {
        int still = 0;
        if (curl_multi_perform(multi, &still) != CURLM_OK) break;
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
            if (msg->msg != CURLMSG_DONE) continue;
            void* priv = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            auto* s = static_cast<Slot*>(priv);
            if (msg->data.result == CURLE_OK) {
                long code = 0;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
                s->out->status = static_cast<int>(code);
            } else {
                s->out->status = 0;
                s->out->error = curl_easy_strerror(msg->data.result);
            }
            curl_multi_remove_handle(multi, msg->easy_handle);
            --running_count;
            free_slots.push_back(s);
        }
        fill();
        if (running_count > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
    // Anything still attached after a multi failure is reported as failed.
    for (auto& s : worker->slots) {
        if (std::find(free_slots.begin(), free_slots.end(), &s) == free_slots.end()) {
            curl_multi_remove_handle(multi, s.easy);
            if (s.out && s.out->status == 0 && s.out->error.empty()) s.out->error = "curl multi failure";
        }
        s.out = nullptr;
    }
    std::lock_guard lock{impl_->mu};
    impl_->idle.push_back(std::move(worker));
}

}  // namespace wsgate::aws
