// Cross-implementation: PyJWT-minted tokens verify in wsgate; wsgate-signed tokens verify in PyJWT.

#include "catch.hpp"
#include "test_keys.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/jwt.hpp>
#include <wsgate/random.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace wsgate;
namespace fs = std::filesystem;

namespace {

const std::string script = std::string(WSGATE_SOURCE_DIR) + "/tests/unit/auth/jwt_interop.py";

struct TempDir {
    fs::path path = fs::path(WSGATE_BINARY_DIR) / ("jwt-interop-" + random_token(6));
    TempDir() { fs::create_directories(path); }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const fs::path& p, std::string_view content) {
    std::ofstream out(p, std::ios::binary);
    out << content;
}

// Runs the interop script; returns its exit status (-1 if it did not exit normally).
int run_python(const std::string& args, const fs::path& log) {
    std::string cmd = "timeout 120 '" + std::string(WSGATE_TEST_PYTHON) + "' '" + script + "' " + args + " > '" +
                      log.string() + "' 2>&1";
    int rc = std::system(cmd.c_str());
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

}  // namespace

TEST_CASE("tokens minted by PyJWT verify in wsgate", "[auth][jwt][python]") {
    TempDir dir;
    int rc = run_python("mint '" + dir.path.string() + "'", dir.path / "mint.log");
    INFO(read_file(dir.path / "mint.log"));
    REQUIRE(rc == 0);
    auto tokens = nlohmann::json::parse(read_file(dir.path / "tokens.json"));

    auto v = jwt::Verifier{}
                 .allow(jwt::Key::hmac(jwt::Algorithm::hs256, read_file(dir.path / "secret.bin")))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::rs256, read_file(dir.path / "rsa.pub")).with_kid("py-rsa"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::es256, read_file(dir.path / "ec.pub")).with_kid("py-ec"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::ps256, read_file(dir.path / "rsa.pub")).with_kid("py-ps256"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::ps384, read_file(dir.path / "rsa.pub")).with_kid("py-ps384"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::ps512, read_file(dir.path / "rsa.pub")).with_kid("py-ps512"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::es512, read_file(dir.path / "ec521.pub")).with_kid("py-ec521"))
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::eddsa, read_file(dir.path / "ed25519.pub")).with_kid("py-ed25519"))
                 .with_issuer("pyjwt")
                 .with_audience("wsgate")
                 .require_claim("exp")
                 .leeway(std::chrono::seconds{5});
    for (const char* alg : {"HS256", "RS256", "ES256", "PS256", "PS384", "PS512", "ES512", "EdDSA"}) {
        INFO(alg);
        jwt::Token t;
        REQUIRE_FALSE(v.verify(tokens.at(alg).get<std::string>(), t));
        CHECK(t.algorithm() == alg);
        CHECK(t.claim<std::string>("sub") == std::optional<std::string>{"py-user"});
        CHECK(t.claims.at("nested").at("n") == nlohmann::json{1, 2});
        auto p = TokenAuthorizer::session_principal(t);
        CHECK(p.kind == PrincipalKind::user);
        CHECK(p.user_id == "py-user");
        CHECK(p.session_id == "py-session");
        CHECK(p.nickname == "Py");
        CHECK(p.permissions == std::vector<std::string>{"read_events"});
    }
    jwt::Token t;
    CHECK(v.verify(tokens.at("HS256-expired").get<std::string>(), t) == jwt_errc::expired);
    // Tampering with a PyJWT token is detected.
    std::string es = tokens.at("ES256").get<std::string>();
    es[es.rfind('.') + 3] = es[es.rfind('.') + 3] == 'A' ? 'B' : 'A';
    CHECK(v.verify(es, t) == jwt_errc::bad_signature);
    // PSS parameters are pinned (RFC 7518 §3.5: salt as long as the hash): the same hand-built
    // construction verifies with a 32-byte salt and is refused with an empty one.
    CHECK_FALSE(v.verify(tokens.at("PS256-salt32").get<std::string>(), t));
    CHECK(v.verify(tokens.at("PS256-salt0").get<std::string>(), t) == jwt_errc::bad_signature);
    for (const char* alg : {"PS384", "ES512", "EdDSA"}) {
        INFO(alg);
        std::string tampered = tokens.at(alg).get<std::string>();
        auto pos = tampered.rfind('.') + 3;
        tampered[pos] = tampered[pos] == 'A' ? 'B' : 'A';
        CHECK(v.verify(tampered, t) == jwt_errc::bad_signature);
    }
}

TEST_CASE("tokens signed by wsgate verify in PyJWT", "[auth][jwt][python]") {
    TempDir dir;
    const std::string secret = "wsgate-to-pyjwt-" + random_token(16);
    write_file(dir.path / "secret.bin", secret);
    auto rs = jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem);
    auto es = jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, test_keys::ec_pem);
    write_file(dir.path / "rsa.pub", rs.public_key_pem());
    write_file(dir.path / "ec.pub", es.public_key_pem());
    auto es512 = jwt::SigningKey::private_key_pem(jwt::Algorithm::es512, test_keys::ec521_pem);
    auto ed = jwt::SigningKey::private_key_pem(jwt::Algorithm::eddsa, test_keys::ed25519_pem);
    write_file(dir.path / "ec521.pub", es512.public_key_pem());
    write_file(dir.path / "ed25519.pub", ed.public_key_pem());
    auto ps = [&](jwt::Algorithm a) { return jwt::SigningKey::private_key_pem(a, test_keys::rsa_pem); };

    const auto now = to_unix_seconds(SystemClock{}.now());
    nlohmann::json claims{{"sub", "cpp-user"}, {"aud", "pyjwt"}, {"iat", now}, {"exp", now + 600}};
    struct Case {
        const char* alg;
        const char* key_file;
        std::string token;
    };
    std::vector<Case> cases = {{"HS256", "secret.bin", jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret))},
                               {"RS256", "rsa.pub", jwt::sign(claims, rs.with_kid("k1"))},
                               {"ES256", "ec.pub", jwt::sign(claims, es)},
                               {"PS256", "rsa.pub", jwt::sign(claims, ps(jwt::Algorithm::ps256))},
                               {"PS384", "rsa.pub", jwt::sign(claims, ps(jwt::Algorithm::ps384))},
                               {"PS512", "rsa.pub", jwt::sign(claims, ps(jwt::Algorithm::ps512))},
                               {"ES512", "ec521.pub", jwt::sign(claims, es512)},
                               {"EdDSA", "ed25519.pub", jwt::sign(claims, ed)}};
    for (const auto& c : cases) {
        INFO(c.alg);
        write_file(dir.path / "token.txt", c.token);
        auto args = std::string(c.alg) + " '" + (dir.path / c.key_file).string() + "' '" +
                    (dir.path / "token.txt").string() + "' cpp-user pyjwt";
        int rc = run_python("verify " + args, dir.path / "verify.log");
        INFO(read_file(dir.path / "verify.log"));
        CHECK(rc == 0);
        // The check is real: a wrong expected subject and a tampered token both fail in PyJWT.
        auto wrong_sub = std::string(c.alg) + " '" + (dir.path / c.key_file).string() + "' '" +
                         (dir.path / "token.txt").string() + "' someone-else pyjwt";
        CHECK(run_python("verify " + wrong_sub, dir.path / "verify.log") == 1);
        std::string tampered = c.token;
        auto pos = tampered.rfind('.') + 4;
        tampered[pos] = tampered[pos] == 'A' ? 'B' : 'A';
        write_file(dir.path / "token.txt", tampered);
        CHECK(run_python("verify " + args, dir.path / "verify.log") == 1);
    }
}
