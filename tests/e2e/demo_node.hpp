#pragma once
// One demo server process (examples/realtime_server) for end-to-end tests, and the user tokens it
// accepts. A node listens on a free loopback port, logs into its own directory under the build
// tree, and is killed by PID (its directory removed) when destroyed. The including target defines
// WSGATE_REALTIME_SERVER (the demo binary) and WSGATE_BINARY_DIR.
#include "process.hpp"

#include <wsgate/auth/jwt.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/random.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace wsgate::test {

/// The user session token secret every DemoNode accepts.
inline const std::string& demo_session_secret() {
    static const std::string s = "cluster-session-secret-0123456789abcdef";
    return s;
}

/// A user session token a DemoNode accepts, holding the demo's "publish" and "read_events"
/// permissions, valid for ten minutes.
inline std::string demo_user_token(const std::string& user) {
    const auto now = to_unix_seconds(SystemClock{}.now());
    return jwt::sign({{"sub", user}, {"permissions", {"publish", "read_events"}}, {"iat", now}, {"exp", now + 600}},
                     jwt::SigningKey::hmac(jwt::Algorithm::hs256, demo_session_secret()));
}

/// A running demo server; `port` is 0 if it did not start listening within 15 s.
struct DemoNode {
    std::filesystem::path dir;
    std::unique_ptr<ChildProcess> proc;
    unsigned short port = 0;

    /// Starts the demo with anonymous readers allowed, admin key "k", the session secret above,
    /// and `extra` flags after those (a later flag wins).
    explicit DemoNode(const std::vector<std::string>& extra) {
        dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp" / random_token(6);
        std::filesystem::create_directories(dir);
        std::vector<std::string> argv{WSGATE_REALTIME_SERVER, "--port=0", "--port-file=" + (dir / "port").string(),
                                      "--allow-anonymous", "--admin-key=k", "--session-secret=" + demo_session_secret(),
                                      "--public-secret=p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        proc = std::make_unique<ChildProcess>(argv, (dir / "server.log").string());
        port = wait_for_port_file((dir / "port").string(), std::chrono::seconds{15});
    }
    DemoNode(const DemoNode&) = delete;
    DemoNode& operator=(const DemoNode&) = delete;
    ~DemoNode() {
        proc.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    [[nodiscard]] std::string url() const { return "ws://127.0.0.1:" + std::to_string(port) + "/ws"; }
    [[nodiscard]] std::string log() const { return slurp((dir / "server.log").string()); }
};

}  // namespace wsgate::test
