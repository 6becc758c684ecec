#pragma once
// Starts tests/unit/aws/fake_connections.py (a SigV4-verifying @connections stand-in) on
// 127.0.0.1, reads its port, and stops it by PID.

#include <wsgate/aws/http_client.hpp>

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace wsgate::test {

/// Starts `python script args...`, reads "PORT <n>" from its stdout; stops it by PID.
class PythonServer {
public:
    PythonServer(const std::string& script, std::vector<std::string> args) {
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
        args.insert(args.begin(), {WSGATE_TEST_PYTHON, std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/" + script});
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            dup2(fds[1], STDOUT_FILENO);
            ::close(fds[0]);
            ::close(fds[1]);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        ::close(fds[1]);
        FILE* out = fdopen(fds[0], "r");
        char line[128] = {};
        const bool ok = out && std::fgets(line, sizeof line, out) != nullptr;
        if (out) std::fclose(out);
        if (!ok || std::sscanf(line, "PORT %d", &port_) != 1) {
            stop();
            throw std::runtime_error(script + " did not start");
        }
    }
    PythonServer(const PythonServer&) = delete;
    PythonServer& operator=(const PythonServer&) = delete;
    ~PythonServer() { stop(); }

    [[nodiscard]] int port() const noexcept { return port_; }
    void stop() {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            int status = 0;
            waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

class FakeConnectionsServer {
public:
    explicit FakeConnectionsServer(const std::string& secret, const std::string& session_token = {},
                                   double delay_ms = 0)
        : process_("fake_connections.py", arguments(secret, session_token, delay_ms)), port_(process_.port()) {}
    FakeConnectionsServer(const FakeConnectionsServer&) = delete;
    FakeConnectionsServer& operator=(const FakeConnectionsServer&) = delete;
    ~FakeConnectionsServer() = default;

    [[nodiscard]] int port() const noexcept { return port_; }
    [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_) + "/prod"; }

    void add_connections(const std::vector<std::string>& ids) {
        (void)control("POST", "connections", nlohmann::json(ids).dump());
    }
    [[nodiscard]] nlohmann::json posts() { return nlohmann::json::parse(control("GET", "posts", {})); }
    [[nodiscard]] nlohmann::json stats() { return nlohmann::json::parse(control("GET", "stats", {})); }

    void stop() { process_.stop(); }

private:
    std::string control(const char* method, const char* what, std::string body) {
        aws::HttpRequest r;
        r.method = method;
        r.scheme = "http";
        r.host = "127.0.0.1:" + std::to_string(port_);
        r.path = std::string{"/_control/"} + what;
        r.body = std::move(body);
        auto resp = client_.perform(r);
        if (resp.status != 200) throw std::runtime_error("control request failed: " + resp.error);
        return resp.body;
    }

    static std::vector<std::string> arguments(const std::string& secret, const std::string& session_token,
                                              double delay_ms) {
        // --flag=value: a value starting with '-' must never be read as an option.
        std::vector<std::string> args{"--secret=" + secret, "--region=us-east-1", "--stage=prod"};
        if (!session_token.empty()) args.push_back("--session-token=" + session_token);
        if (delay_ms > 0) args.push_back("--delay-ms=" + std::to_string(delay_ms));
        return args;
    }

    PythonServer process_;
    int port_ = 0;
    aws::CurlHttpClient client_{aws::CurlSettings{.max_concurrency = 1}};
};

}  // namespace wsgate::test
