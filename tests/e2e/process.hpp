#pragma once
// Child processes for end-to-end tests: started with posix_spawn, always killed and reaped.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace wsgate::test {

class ChildProcess {
public:
    /// Starts `argv[0]` (an absolute path). With `own_group`, the child leads a new process group
    /// and kill() signals the whole group (the child's own children included).
    explicit ChildProcess(std::vector<std::string> argv, const std::string& log_path = {}, bool own_group = false)
        : group_(own_group) {
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (!log_path.empty()) {
            posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            posix_spawn_file_actions_adddup2(&fa, 1, 2);
        }
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        if (own_group) {
            posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
            posix_spawnattr_setpgroup(&attr, 0);
        }
        if (posix_spawn(&pid_, args[0], &fa, &attr, args.data(), environ) != 0) pid_ = -1;
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        pgid_ = own_group ? pid_ : -1;
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess() {
        kill(SIGKILL);
        if (pgid_ > 0) ::kill(-pgid_, SIGKILL);  // whatever the child left behind
    }

    [[nodiscard]] bool started() const { return pid_ > 0; }
    [[nodiscard]] pid_t pid() const { return pid_; }

    /// Waits up to `timeout` for exit; returns the exit status, or -1 on timeout (then kills it).
    int wait(std::chrono::milliseconds timeout) {
        if (pid_ <= 0) return status_;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                return status_;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        kill(SIGKILL);
        return -1;
    }

    /// Sends `sig` and, for SIGKILL, reaps the child.
    void kill(int sig) {
        if (pid_ <= 0) return;
        ::kill(group_ ? -pid_ : pid_, sig);
        if (sig == SIGKILL) {
            int st = 0;
            ::waitpid(pid_, &st, 0);
            pid_ = -1;
        }
    }

private:
    bool group_ = false;
    pid_t pid_ = -1;
    pid_t pgid_ = -1;
    int status_ = -1;
};

/// Reads a port number written by `--port-file`, waiting up to `timeout`; 0 if none appeared.
inline unsigned short wait_for_port_file(const std::string& path, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::ifstream f(path);
        unsigned port = 0;
        if (f >> port && port > 0) return static_cast<unsigned short>(port);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
}

inline std::string slurp(const std::string& path) {
    std::ifstream f(path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace wsgate::test
