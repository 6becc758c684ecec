#pragma once
// tests/dynamodb/throttle_proxy.js under node, in front of a DynamoDB endpoint (dynalite): it
// throttles every Nth request, cuts every Nth batch short (UnprocessedItems / UnprocessedKeys), or
// throttles everything, as its flags say. Started in the constructor (waits for its
// `listening <port>` line), killed by PID in the destructor. The script's folder comes from the
// compile definition WSGATE_DYNALITE_DIR (tests/dynamodb); node from $WSGATE_NODE, else the
// compile definition WSGATE_NODE, else PATH.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <vector>

namespace wsgate::test {

class ThrottleProxy {
public:
    /// Starts the proxy in front of `target` (e.g. `http://127.0.0.1:8000`) with `flags`
    /// (`--throttle-every`, `3`, `--unprocessed-every`, `2`, `--fail-all`, ...).
    ThrottleProxy(const std::string& target, std::vector<std::string> flags) {
        const std::filesystem::path script = std::filesystem::path(script_dir()) / "throttle_proxy.js";
        if (!std::filesystem::exists(script)) throw std::runtime_error(script.string() + " is missing");
        std::vector<std::string> args{node_binary(), script.string(), "--target", target, "--port", "0"};
        args.insert(args.end(), flags.begin(), flags.end());
        std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
        const pid_t child = ::fork();
        if (child < 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw std::runtime_error("fork failed");
        }
        if (child == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
            ::dup2(out[1], STDOUT_FILENO);
            ::close(out[0]);
            ::close(out[1]);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        pid_ = child;
        port_ = read_port(out[0]);
        ::close(out[0]);
        if (port_ <= 0) {
            stop();
            throw std::runtime_error("throttle_proxy.js did not report its port");
        }
    }
    ThrottleProxy(const ThrottleProxy&) = delete;
    ThrottleProxy& operator=(const ThrottleProxy&) = delete;
    ~ThrottleProxy() { stop(); }

    /// `http://127.0.0.1:<port>`, for DynamoDbStoreSettings::endpoint.
    [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    /// The body of GET /__stats (JSON: requests, forwarded, throttled, unprocessed_batches, ...).
    [[nodiscard]] std::string stats() const {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) throw std::runtime_error("socket failed");
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        std::string response;
        const std::string request = "GET /__stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
            char buf[4096];
            for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        const auto body = response.find("\r\n\r\n");
        if (!response.starts_with("HTTP/1.1 200") || body == std::string::npos)
            throw std::runtime_error("GET /__stats failed: " + response);
        return response.substr(body + 4);
    }

    /// SIGKILLs the proxy and reaps it.
    void stop() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

private:
    static std::string script_dir() {
#ifdef WSGATE_DYNALITE_DIR
        return WSGATE_DYNALITE_DIR;
#else
        return WSGATE_SOURCE_DIR "/tests/dynamodb";
#endif
    }
    static std::string node_binary() {
        if (const char* env = std::getenv("WSGATE_NODE"); env != nullptr && *env != '\0') return env;
#ifdef WSGATE_NODE
        return WSGATE_NODE;
#else
        return "node";
#endif
    }
    // Reads `listening <port>\n` from the child's stdout, for up to 20 s.
    static int read_port(int fd) {
        std::string line;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char c = 0;
            const ssize_t n = ::read(fd, &c, 1);
            if (n <= 0) return -1;  // the proxy exited
            if (c == '\n') break;
            line.push_back(c);
        }
        constexpr std::string_view prefix = "listening ";
        if (!line.starts_with(prefix)) return -1;
        return std::atoi(line.c_str() + prefix.size());
    }

    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace wsgate::test
