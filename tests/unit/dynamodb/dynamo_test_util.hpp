#pragma once
// Shared by the DynamoDB store tests: one dynalite per test process, a fresh table per call, and an
// HttpClient that records (and may answer in place of) the requests a store sends.

#include "dynalite_server.hpp"

#include <wsgate/aws/http_client.hpp>
#include <wsgate/dynamodb/dynamodb_store.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace wsgate::test {

inline DynaliteServer& dynalite() {
    static DynaliteServer server;
    return server;
}

/// Settings for a new, empty table on the shared dynalite (created here).
inline DynamoDbStoreSettings fresh_table(std::shared_ptr<Clock> clock = nullptr) {
    static std::atomic<int> counter{0};
    DynamoDbStoreSettings s;
    s.table = "unit-" + std::to_string(counter++);
    s.endpoint = dynalite().endpoint();
    s.region = "eu-west-1";
    s.credentials = aws::Credentials{"AKIDEXAMPLE", "secret", {}};
    s.clock = std::move(clock);
    const auto setup = create_dynamodb_table(s);
    if (!setup.created) throw std::runtime_error("table " + s.table + " existed already");
    return s;
}

/// The DynamoDB operation a request names (`X-Amz-Target: DynamoDB_20120810.<Op>`).
inline std::string operation_of(const aws::HttpRequest& r) {
    const auto* t = r.header("X-Amz-Target");
    if (t == nullptr) return {};
    const auto dot = t->find('.');
    return dot == std::string::npos ? *t : t->substr(dot + 1);
}

/// Forwards to a CurlHttpClient, keeping every request; `intercept` may answer one instead.
class RecordingHttp final : public aws::HttpClient {
public:
    std::function<std::optional<aws::HttpResponse>(const aws::HttpRequest&)> intercept;

    aws::HttpResponse perform(const aws::HttpRequest& r) override {
        {
            std::lock_guard lock(mu_);
            seen_.push_back(r);
        }
        if (intercept)
            if (auto answer = intercept(r)) return *answer;
        return real_.perform(r);
    }
    std::vector<aws::HttpRequest> seen() {
        std::lock_guard lock(mu_);
        return seen_;
    }
    std::vector<std::string> operations() {
        std::vector<std::string> out;
        for (const auto& r : seen()) out.push_back(operation_of(r));
        return out;
    }
    void clear() {
        std::lock_guard lock(mu_);
        seen_.clear();
    }

private:
    aws::CurlHttpClient real_;
    std::mutex mu_;
    std::vector<aws::HttpRequest> seen_;
};

inline aws::HttpResponse dynamo_error(int status, const std::string& type, const std::string& message) {
    aws::HttpResponse r;
    r.status = status;
    r.body = R"({"__type":"com.amazonaws.dynamodb.v20120810#)" + type + R"(","message":")" + message + R"("})";
    return r;
}

}  // namespace wsgate::test
