#pragma once
// A local DynamoDB for tests: dynalite (npm, pinned in tests/dynamodb/package.json) under node on
// 127.0.0.1, a random free port, in memory. Started in the constructor (waits until it answers
// HTTP), killed by PID in the destructor. The folder holding node_modules/dynalite comes from the
// compile definition WSGATE_DYNALITE_DIR (tests/dynamodb); node from WSGATE_NODE or PATH.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace wsgate::test {

class DynaliteServer {
public:
    DynaliteServer() {
        port_ = free_port();
        start();
    }
    DynaliteServer(const DynaliteServer&) = delete;
    DynaliteServer& operator=(const DynaliteServer&) = delete;
    ~DynaliteServer() { stop(); }

    [[nodiscard]] int port() const noexcept { return port_; }
    /// `http://127.0.0.1:<port>`, for DynamoDbStoreSettings::endpoint.
    [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    /// SIGKILLs the server and reaps it.
    void stop() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    void start() {
        if (pid_ > 0) return;
        const std::string node = node_binary();
        const std::filesystem::path cli = std::filesystem::path(dir()) / "node_modules" / "dynalite" / "cli.js";
        if (node.empty())
            throw std::runtime_error("node not found (set WSGATE_NODE or put node on PATH); the DynamoDB tests run dynalite under it");
        if (!std::filesystem::exists(cli))
            throw std::runtime_error(cli.string() + " is missing: run npm ci in tests/dynamodb");
        const std::string port = std::to_string(port_);
        std::vector<std::string> args{node, cli.string(), "--host", "127.0.0.1", "--port", port,
                                      "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"};
        std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t child = ::fork();
        if (child < 0) throw std::runtime_error("fork failed");
        if (child == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
            const int null = ::open("/dev/null", O_WRONLY);
            if (null >= 0) ::dup2(null, STDOUT_FILENO);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = child;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
        while (std::chrono::steady_clock::now() < deadline) {
            if (answers()) return;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("dynalite exited at start (" + node + " " + cli.string() +
                                         "); run npm ci in tests/dynamodb");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
        }
        stop();
        throw std::runtime_error("dynalite did not answer on port " + port);
    }

    /// True if something answers HTTP on the port (dynalite answers any request, even unsigned).
    [[nodiscard]] bool answers() const noexcept {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return false;
        timeval tv{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = false;
        static constexpr char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof request - 1)) {
            char buf[16] = {};
            ok = ::recv(fd, buf, sizeof buf - 1, 0) >= 12 && std::string(buf).starts_with("HTTP/1.1");
        }
        ::close(fd);
        return ok;
    }

    /// A port nothing listens on (bound, then released): for tests of an unreachable endpoint.
    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            if (fd >= 0) ::close(fd);
            throw std::runtime_error("cannot find a free port");
        }
        ::close(fd);
        return ntohs(addr.sin_port);
    }

private:
    static std::string dir() {
#ifdef WSGATE_DYNALITE_DIR
        return WSGATE_DYNALITE_DIR;
#else
        return "tests/dynamodb";
#endif
    }
    static std::string node_binary() {
        if (const char* env = std::getenv("WSGATE_NODE"); env != nullptr && *env != '\0') return env;
#ifdef WSGATE_NODE
        if (std::filesystem::exists(WSGATE_NODE)) return WSGATE_NODE;
#endif
        const char* path = std::getenv("PATH");
        std::string rest = path != nullptr ? path : "/usr/bin:/bin";
        while (!rest.empty()) {
            const auto colon = rest.find(':');
            const auto candidate = std::filesystem::path(rest.substr(0, colon)) / "node";
            if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
            if (colon == std::string::npos) break;
            rest = rest.substr(colon + 1);
        }
        return {};
    }

    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace wsgate::test
