// Starts examples/realtime_server on a free port and runs independent Python WebSocket peers
// (Debian python3-websockets) against it.
#include "catch.hpp"
#include "process.hpp"

#include <wsgate/random.hpp>

#include <filesystem>
#include <iostream>

using namespace std::chrono_literals;

namespace {

struct ServerUnderTest {
    std::filesystem::path dir;
    std::unique_ptr<wsgate::test::ChildProcess> proc;
    unsigned short port = 0;
    std::string admin_key = wsgate::random_token(16);
    std::string session_secret = wsgate::random_token(32);
    std::string public_secret = wsgate::random_token(32);

    explicit ServerUnderTest(std::vector<std::string> extra = {}) {
        dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / wsgate::random_token(6);
        std::filesystem::create_directories(dir);
        // Values go as --flag=value: a random secret may start with '-' and must never be
        // taken for an option by either side's argument parser.
        std::vector<std::string> argv{WSGATE_REALTIME_SERVER, "--port=0", "--port-file=" + (dir / "port").string(),
                                      "--admin-key=" + admin_key, "--max-message-bytes=65536",
                                      "--rate=20", "--burst=40", "--session-secret=" + session_secret,
                                      "--public-secret=" + public_secret};
        argv.insert(argv.end(), extra.begin(), extra.end());
        proc = std::make_unique<wsgate::test::ChildProcess>(argv, (dir / "server.log").string());
        port = wsgate::test::wait_for_port_file((dir / "port").string(), 10s);
    }
    ~ServerUnderTest() {
        proc.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::string log() const { return wsgate::test::slurp((dir / "server.log").string()); }

    /// Runs a Python peer script from tests/e2e/python against this server; its exit code and report.
    std::pair<int, std::string> run_peers(const std::string& script, std::vector<std::string> args) const {
        const auto out = (dir / (script + ".log")).string();
        args.insert(args.begin(), {WSGATE_TEST_PYTHON, WSGATE_SOURCE_DIR "/tests/e2e/python/" + script,
                                   "--port=" + std::to_string(port), "--admin-key=" + admin_key,
                                   "--session-secret=" + session_secret, "--public-secret=" + public_secret});
        wsgate::test::ChildProcess py(args, out);
        if (!py.started()) return {-1, "could not start " + script};
        const int rc = py.wait(240s);
        return {rc, wsgate::test::slurp(out)};
    }
};

}  // namespace

TEST_CASE("realtime_server passes the Python peer suite", "[e2e][beast][python]") {
    ServerUnderTest srv;
    REQUIRE(srv.proc->started());
    REQUIRE(srv.port != 0);
    const auto [rc, report] = srv.run_peers("realtime_server_e2e.py", {"--burst=40", "--max-message-bytes=65536"});
    std::cout << report;
    INFO(report);
    INFO(srv.log());
    CHECK(rc == 0);
    CHECK(report.find("FAIL") == std::string::npos);
    CHECK(report.find("ok   case_jwt_tokens") != std::string::npos);  // the server runs the JWT authorizer
}

TEST_CASE("realtime_server holds the permission model against hostile clients", "[e2e][beast][python][security]") {
    ServerUnderTest srv({"--allow-anonymous", "--max-connections-per-address=24"});
    REQUIRE(srv.port != 0);
    const auto [rc, report] = srv.run_peers("security_e2e.py", {"--max-per-address=24"});
    std::cout << report;
    INFO(report);
    INFO(srv.log());
    CHECK(rc == 0);
    CHECK(report.find("FAIL") == std::string::npos);
    CHECK(report.find("cases passed") != std::string::npos);
}

TEST_CASE("realtime_server exits cleanly on SIGTERM", "[e2e][beast]") {
    ServerUnderTest srv;
    REQUIRE(srv.port != 0);
    srv.proc->kill(SIGTERM);
    CHECK(srv.proc->wait(10s) == 0);
    CHECK(srv.log().find("shutting down") != std::string::npos);
}
