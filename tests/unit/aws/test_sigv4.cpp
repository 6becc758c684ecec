// SigV4 against the public AWS Signature Version 4 test suite (files under data/sigv4/).
#include "catch.hpp"

#include <wsgate/aws/connections_transport.hpp>
#include <wsgate/aws/error.hpp>
#include <wsgate/aws/sigv4.hpp>

#include <fstream>
#include <sstream>
#include <string>

using namespace wsgate;
using namespace wsgate::aws;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    REQUIRE(in.good());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string suite_file(const std::string& name, const std::string& ext) {
    return read_file(std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/data/sigv4/" + name + "/" + name + "." + ext);
}

// Parses a suite `.req` file: request line, headers (folded lines continue the previous value), body.
HttpRequest parse_req(const std::string& text) {
    HttpRequest r;
    std::string head = text, body;
    if (auto blank = text.find("\n\n"); blank != std::string::npos) {
        head = text.substr(0, blank);
        body = text.substr(blank + 2);
    }
    std::istringstream lines{head};
    std::string line;
    std::getline(lines, line);
    const auto sp1 = line.find(' ');
    const auto sp2 = line.rfind(' ');
    r.method = line.substr(0, sp1);
    const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto q = target.find('?');
    r.path = target.substr(0, q);
    r.query = q == std::string::npos ? std::string{} : target.substr(q + 1);
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        if ((line[0] == ' ' || line[0] == '\t') && !r.headers.empty()) {
            r.headers.back().second += "," + line;
            continue;
        }
        const auto colon = line.find(':');
        r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
        if (r.headers.back().first == "Host") r.host = r.headers.back().second;
    }
    r.body = body;
    return r;
}

const Credentials suite_credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", {}};
const TimePoint suite_time = from_unix_seconds(1440938160);  // 20150830T123600Z

void check_case(const std::string& name, const Credentials& creds) {
    INFO("suite case " << name);
    auto request = parse_req(suite_file(name, "req"));
    const auto sig = sign_request(request, creds, SigningScope{"us-east-1", "service"}, suite_time);
    CHECK(sig.canonical_request == suite_file(name, "creq"));
    CHECK(sig.string_to_sign == suite_file(name, "sts"));
    CHECK(sig.authorization == suite_file(name, "authz"));
    REQUIRE(request.header("authorization"));
    CHECK(*request.header("authorization") == sig.authorization);
}

}  // namespace

TEST_CASE("SigV4 reproduces the AWS test suite", "[aws][sigv4]") {
    for (const char* name : {"get-vanilla", "get-vanilla-query-order-key-case", "post-vanilla", "post-x-www-form-urlencoded",
                             "get-header-value-trim"})
        check_case(name, suite_credentials);
}

TEST_CASE("SigV4 signs the session token (get-vanilla-with-session-token)", "[aws][sigv4]") {
    auto creds = suite_credentials;
    creds.session_token = read_file(std::string{WSGATE_SOURCE_DIR} +
                                    "/tests/unit/aws/data/sigv4/get-vanilla-with-session-token/session-token.txt");
    auto request = parse_req(suite_file("get-vanilla-with-session-token", "req"));
    REQUIRE_FALSE(request.header("x-amz-date"));  // the signer adds X-Amz-Date and the token itself
    check_case("get-vanilla-with-session-token", creds);
}

TEST_CASE("SigV4 signatures change with every signed input", "[aws][sigv4]") {
    auto base = parse_req(suite_file("post-vanilla", "req"));
    auto a = base;
    const auto sa = sign_request(a, suite_credentials, {"us-east-1", "service"}, suite_time);
    auto b = base;
    b.body = "x";
    CHECK(sign_request(b, suite_credentials, {"us-east-1", "service"}, suite_time).signature != sa.signature);
    auto c = base;
    CHECK(sign_request(c, suite_credentials, {"eu-west-1", "service"}, suite_time).signature != sa.signature);
    auto d = base;
    auto wrong = suite_credentials;
    wrong.secret_access_key += "x";
    CHECK(sign_request(d, wrong, {"us-east-1", "service"}, suite_time).signature != sa.signature);
    // Re-signing replaces the Authorization header instead of signing it.
    const auto again = sign_request(a, suite_credentials, {"us-east-1", "service"}, suite_time);
    CHECK(again.signature == sa.signature);
    CHECK(again.signed_headers == "host;x-amz-date");
}

TEST_CASE("SigV4 canonical URI encodes @connections paths once more", "[aws][sigv4]") {
    HttpRequest r;
    r.method = "POST";
    r.host = "abc.execute-api.us-east-1.amazonaws.com";
    r.path = "/prod/@connections/" + uri_encode("RyhQHdzxIAMCKjA=");
    CHECK(r.path == "/prod/@connections/RyhQHdzxIAMCKjA%3D");
    const auto s = canonical_request(r);
    CHECK(s.canonical_request.rfind("POST\n/prod/%40connections/RyhQHdzxIAMCKjA%253D\n\n", 0) == 0);
}

TEST_CASE("uri_encode and amz dates", "[aws][sigv4]") {
    CHECK(uri_encode("a b/c~-_.") == "a%20b%2Fc~-_.");
    CHECK(uri_encode("a b/c", false) == "a%20b/c");
    CHECK(uri_encode("\xE1\x88\xB4") == "%E1%88%B4");
    CHECK(format_amz_date(suite_time) == "20150830T123600Z");
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("management endpoint parsing turns wss:// into https://", "[aws][transport]") {
    std::error_code ec;
    auto e = parse_endpoint("wss://abc123.execute-api.eu-west-1.amazonaws.com/prod", ec);
    REQUIRE(e);
    CHECK_FALSE(ec);
    CHECK(e->scheme == "https");
    CHECK(e->host == "abc123.execute-api.eu-west-1.amazonaws.com");
    CHECK(e->stage == "prod");
    CHECK(region_from_host(e->host) == "eu-west-1");

    e = parse_endpoint("https://ws-dev.example.live/", ec);
    REQUIRE(e);
    CHECK(e->stage.empty());
    CHECK(region_from_host(e->host).empty());

    e = parse_endpoint("https://abc.execute-api.us-east-1.amazonaws.com/prod/@connections", ec);
    REQUIRE(e);
    CHECK(e->stage == "prod");

    e = parse_endpoint("http://127.0.0.1:8080/dev", ec);
    REQUIRE(e);
    CHECK(e->scheme == "http");
    CHECK(e->host == "127.0.0.1:8080");

    for (const char* bad : {"", "ftp://x/y", "https:///prod", "https://user@host/prod", "https://ho st/prod"}) {
        INFO(bad);
        CHECK_FALSE(parse_endpoint(bad, ec));
        CHECK(ec == config_errc::bad_endpoint);
    }
}

TEST_CASE("the transport refuses to start without region or credentials", "[aws][transport]") {
    ConnectionsSettings s;
    s.endpoint = "https://custom.example.com/prod";
    s.credentials = Credentials{"AK", "SK", {}};
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK_THROWS_AS(ConnectionsTransport{s}, std::invalid_argument);
    s.region = "us-east-1";
    CHECK_NOTHROW(ConnectionsTransport{s});
    s.endpoint = "gopher://x";
    CHECK_THROWS_AS(ConnectionsTransport{s}, std::invalid_argument);

    ConnectionsSettings env_only;
    env_only.endpoint = "wss://abc.execute-api.ap-south-1.amazonaws.com/prod";
    unsetenv("AWS_ACCESS_KEY_ID");
    CHECK_THROWS_AS(ConnectionsTransport{env_only}, std::invalid_argument);
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
    setenv("AWS_SESSION_TOKEN", "TOKENV", 1);
    ConnectionsTransport t{env_only};
    CHECK(t.region() == "ap-south-1");
    const auto r = t.make_request("POST", "id=", "{}");
    REQUIRE(r.header("x-amz-security-token"));
    CHECK(*r.header("x-amz-security-token") == "TOKENV");
    CHECK(r.header("authorization")->find("Credential=AKENV/") != std::string::npos);
    CHECK(r.url() == "https://abc.execute-api.ap-south-1.amazonaws.com/prod/@connections/id%3D");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}
