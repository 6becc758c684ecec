// ReconnectPolicy: backoff values, jitter from an injected source, attempt cap, reset.
#include "catch.hpp"

#include <wsgate/client/reconnect_policy.hpp>

#include <limits>
#include <set>

using namespace std::chrono_literals;
using wsgate::Duration;
using wsgate::client::ReconnectPolicy;
using wsgate::client::ReconnectSettings;

namespace {
wsgate::client::RandomSource constant(std::uint64_t v) {
    return [v] { return v; };
}
}  // namespace

TEST_CASE("backoff doubles from 1 s up to 30 s and stops after 10 attempts", "[client][backoff]") {
    ReconnectPolicy p{{}, constant(0)};
    std::vector<Duration> got;
    while (auto d = p.next_delay()) got.push_back(*d);
    const std::vector<Duration> want{1000ms, 2000ms, 4000ms, 8000ms, 16000ms,
                                     30000ms, 30000ms, 30000ms, 30000ms, 30000ms};
    CHECK(got == want);
    CHECK(p.attempts() == 10);
    CHECK(p.exhausted());
    CHECK_FALSE(p.next_delay());
    CHECK(p.attempts() == 10);

    p.reset();
    CHECK_FALSE(p.exhausted());
    CHECK(p.attempts() == 0);
    CHECK(p.next_delay() == Duration{1000});
}

TEST_CASE("jitter is the random value modulo max_jitter + 1, added to the base", "[client][backoff]") {
    CHECK(ReconnectPolicy({}, constant(250)).next_delay() == Duration{1250});
    CHECK(ReconnectPolicy({}, constant(1000)).next_delay() == Duration{2000});
    CHECK(ReconnectPolicy({}, constant(1001)).next_delay() == Duration{1000});
    CHECK(ReconnectPolicy({}, constant(1002)).next_delay() == Duration{1001});
    const auto big = std::numeric_limits<std::uint64_t>::max();
    CHECK(ReconnectPolicy({}, constant(big)).next_delay() ==
          Duration{1000 + static_cast<Duration::rep>(big % 1001)});

    ReconnectSettings none;
    none.max_jitter = 0ms;
    CHECK(ReconnectPolicy(none, constant(777)).next_delay() == Duration{1000});

    // The jitter never pushes attempt 6+ past max + max_jitter.
    ReconnectPolicy p{{}, constant(999)};
    for (int i = 0; i < 6; ++i) (void)p.next_delay();
    CHECK(p.next_delay() == Duration{30999});
}

TEST_CASE("the default random source stays within [0, max_jitter] and spreads", "[client][backoff]") {
    std::set<Duration::rep> seen;
    for (int i = 0; i < 200; ++i) {
        ReconnectPolicy p;
        const auto d = p.next_delay();
        REQUIRE(d);
        CHECK(*d >= 1000ms);
        CHECK(*d <= 2000ms);
        seen.insert(d->count());
    }
    CHECK(seen.size() > 1);
}

TEST_CASE("base_delay is overflow-safe and honours custom settings", "[client][backoff]") {
    ReconnectSettings s;
    CHECK(ReconnectPolicy::base_delay(s, 0) == 1000ms);
    CHECK(ReconnectPolicy::base_delay(s, 4) == 16000ms);
    CHECK(ReconnectPolicy::base_delay(s, 5) == 30000ms);
    CHECK(ReconnectPolicy::base_delay(s, 1000) == 30000ms);
    CHECK(ReconnectPolicy::base_delay(s, std::numeric_limits<std::size_t>::max()) == 30000ms);
    s.initial_delay = 0ms;
    CHECK(ReconnectPolicy::base_delay(s, 3) == 0ms);
    s.initial_delay = 100ms;
    s.max_delay = std::chrono::hours{24 * 365 * 1000};
    CHECK(ReconnectPolicy::base_delay(s, 3) == 800ms);
    CHECK(ReconnectPolicy::base_delay(s, 200) == s.max_delay);

    ReconnectSettings custom;
    custom.initial_delay = 500ms;
    custom.max_delay = 3s;
    custom.max_jitter = 0ms;
    custom.max_attempts = 3;
    ReconnectPolicy p{custom};
    CHECK(p.next_delay() == Duration{500});
    CHECK(p.next_delay() == Duration{1000});
    CHECK(p.next_delay() == Duration{2000});
    CHECK_FALSE(p.next_delay());
}

TEST_CASE("max_attempts 0 never reconnects; bad settings throw", "[client][backoff]") {
    ReconnectSettings s;
    s.max_attempts = 0;
    ReconnectPolicy p{s};
    CHECK(p.exhausted());
    CHECK_FALSE(p.next_delay());

    ReconnectSettings bad;
    bad.initial_delay = Duration{-1};
    CHECK_THROWS_AS(ReconnectPolicy(bad), std::invalid_argument);
    bad = {};
    bad.max_jitter = Duration{-1};
    CHECK_THROWS_AS(ReconnectPolicy(bad), std::invalid_argument);
    bad = {};
    bad.initial_delay = 60s;
    CHECK_THROWS_AS(ReconnectPolicy(bad), std::invalid_argument);
}
