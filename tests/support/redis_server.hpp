#pragma once
// A real redis-server for tests: 127.0.0.1, a random free port, a temp dir, no persistence.
// Started in the constructor (waits until PING answers), killed by PID in the destructor.
// The binary is $WSGATE_REDIS_SERVER or /usr/bin/redis-server (Debian package redis-server).

#include "temp_dir.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace wsgate::test {

class RedisServer {
public:
    RedisServer() : dir_("wsgate-redis") {
        port_ = free_port();
        start();
    }
    /// A server started with `extra` appended to its command line (e.g. cluster mode).
    explicit RedisServer(std::vector<std::string> extra) : dir_("wsgate-redis"), extra_(std::move(extra)) {
        port_ = free_port();
        start();
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;
    ~RedisServer() { stop(); }

    [[nodiscard]] int port() const noexcept { return port_; }
    [[nodiscard]] std::string host() const { return "127.0.0.1"; }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
    [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_.path(); }

    /// SIGKILLs the server (a crash, as far as clients can tell) and reaps it.
    void stop() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    /// Starts the server on the same port (after stop()); waits until it answers PING.
    void start() {
        if (pid_ > 0) return;
        const std::string bin = binary();
        if (!std::filesystem::exists(bin))
            throw std::runtime_error("redis-server not found at " + bin + " (apt-get install redis-server)");
        const std::string port = std::to_string(port_);
        const std::string dir = dir_.path().string();
        std::vector<std::string> args{bin, "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", "--logfile", dir + "/redis.log"};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe functions
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t child = ::fork();
        if (child < 0) throw std::runtime_error("fork failed");
        if (child == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = child;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        while (std::chrono::steady_clock::now() < deadline) {
            if (ping()) return;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("redis-server exited at start; see " + dir + "/redis.log");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        stop();
        throw std::runtime_error("redis-server did not answer PING on port " + port);
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    void pause() noexcept {
        if (pid_ > 0) ::kill(pid_, SIGSTOP);
    }
    /// Thaws a paused server (SIGCONT).
    void resume() noexcept {
        if (pid_ > 0) ::kill(pid_, SIGCONT);
    }

    void restart() {
        stop();
        start();
    }

    /// True if the server answers PING (plain RESP over a loopback socket).
    [[nodiscard]] bool ping() const noexcept {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return false;
        timeval tv{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = false;
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
            char buf[16] = {};
            ok = ::recv(fd, buf, sizeof buf - 1, 0) >= 5 && std::string(buf).starts_with("+PONG");
        }
        ::close(fd);
        return ok;
    }

    /// A free loopback TCP port (another process may take it before it is used).
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
    static std::string binary() {
        const char* env = std::getenv("WSGATE_REDIS_SERVER");
        return env != nullptr && *env != '\0' ? env : "/usr/bin/redis-server";
    }
    TempDir dir_;
    std::vector<std::string> extra_;
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace wsgate::test
