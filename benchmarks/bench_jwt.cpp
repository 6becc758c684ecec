// JWT verifications per second: wsgate HS256 / RS256 / ES256, and an in-run HS256 baseline made of
// the minimum any verifier must do — raw OpenSSL HMAC with a reused keyed context, a constant-time
// compare, and nlohmann parses of the same token's header and payload.
//
//   cmake -S . -B build-rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSGATE_BUILD_TESTS=OFF
//   cmake --build build-rel --target bench_jwt
//   taskset -c 0 build-rel/benchmarks/bench_jwt --benchmark_min_time=2

#include <wsgate/auth/jwt.hpp>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

using namespace wsgate;

const std::string secret = "benchmark-secret-0123456789abcdef";

nlohmann::json session_claims() {
    const auto now = to_unix_seconds(SystemClock{}.now());
    return {{"sub", "user-12345"},
            {"sid", "sess-abcdef"},
            {"iss", "https://auth.example.com"},
            {"aud", "game"},
            {"iat", now},
            {"exp", now + 3600},
            {"nickname", "Ana"},
            {"permissions", {"read_leaderboard", "read_events", "publish_chat"}}};
}

jwt::Verifier verifier_for(const jwt::Key& key) {
    return jwt::Verifier{}.allow(key).with_issuer("https://auth.example.com").with_audience("game");
}

std::string generate_pem(const char* type, const char* param) {
    EVP_PKEY* pkey = nullptr;
    if (std::string(type) == "RSA")
        pkey = EVP_RSA_gen(2048);
    else
        pkey = EVP_EC_gen(param);
    if (pkey == nullptr) throw std::runtime_error("keygen failed");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(len));
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return pem;
}

void run_wsgate(benchmark::State& state, const jwt::SigningKey& key) {
    const auto token = jwt::sign(session_claims(), key);
    const auto v = verifier_for(key.verification_key());
    jwt::Token out;
    if (v.verify(token, out)) state.SkipWithError("token does not verify");
    for (auto _ : state) {
        auto ec = v.verify(token, out);
        benchmark::DoNotOptimize(ec);
        benchmark::DoNotOptimize(out.claims);
    }
    state.counters["verifications/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                           benchmark::Counter::kIsRate);
}

void BM_wsgate_HS256(benchmark::State& state) {
    run_wsgate(state, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret));
}
void BM_wsgate_RS256(benchmark::State& state) {
    static const auto key = jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, generate_pem("RSA", nullptr));
    run_wsgate(state, key);
}
void BM_wsgate_ES256(benchmark::State& state) {
    static const auto key = jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, generate_pem("EC", "P-256"));
    run_wsgate(state, key);
}

// Baseline: what a hand-rolled HS256 check costs with the same building blocks.
void BM_baseline_HS256_raw_openssl_hmac_plus_nlohmann(benchmark::State& state) {
    const auto token = jwt::sign(session_claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret));
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), params);
    std::string header, payload, sig;
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    bool all_ok = true;
    for (auto _ : state) {
        std::string_view t = token;
        auto d1 = t.find('.');
        auto d2 = t.find('.', d1 + 1);
        std::string_view input = t.substr(0, d2);
        std::size_t len = 0;
        EVP_MAC_init(ctx, nullptr, 0, nullptr);
        EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(input.data()), input.size());
        EVP_MAC_final(ctx, out.data(), &len, out.size());
        bool ok = jwt::base64url_decode(t.substr(d2 + 1), sig) && sig.size() == len &&
                  CRYPTO_memcmp(out.data(), sig.data(), len) == 0;
        ok = ok && jwt::base64url_decode(t.substr(0, d1), header) && jwt::base64url_decode(t.substr(d1 + 1, d2 - d1 - 1), payload);
        auto h = nlohmann::json::parse(header, nullptr, false);
        auto p = nlohmann::json::parse(payload, nullptr, false);
        all_ok = all_ok && ok && h.is_object() && p.is_object();
        benchmark::DoNotOptimize(h);
        benchmark::DoNotOptimize(p);
    }
    if (!all_ok) state.SkipWithError("baseline failed to verify");
    state.counters["verifications/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                           benchmark::Counter::kIsRate);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

}  // namespace

BENCHMARK(BM_baseline_HS256_raw_openssl_hmac_plus_nlohmann);
BENCHMARK(BM_wsgate_HS256);
BENCHMARK(BM_wsgate_RS256);
BENCHMARK(BM_wsgate_ES256);
