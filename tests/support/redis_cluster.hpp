#pragma once
// A real Redis Cluster for tests: `masters` redis-server processes in cluster mode (each with
// `replicas` replicas) on 127.0.0.1 with random free ports, joined with
// `redis-cli --cluster create`; waits until every node reports cluster_state:ok. Every process is
// killed by PID in the destructor. Needs redis-server and redis-cli (Debian: redis-server, which
// pulls in redis-tools).

#include "redis_server.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace wsgate::test {

class RedisCluster {
public:
    explicit RedisCluster(int masters = 3, int replicas = 0) {
        std::string nodes;
        for (int i = 0; i < masters * (1 + replicas); ++i) {
            const int bus_port = RedisServer::free_port();
            nodes_.push_back(std::make_unique<RedisServer>(std::vector<std::string>{
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                "--cluster-port", std::to_string(bus_port), "--cluster-require-full-coverage", "no"}));
            nodes += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
        }
        const auto log = (nodes_.front()->dir() / "cluster-create.log").string();
        const std::string cmd = cli() + " --cluster create" + nodes + " --cluster-replicas " +
                                std::to_string(replicas) + " --cluster-yes > " + log + " 2>&1";
        if (std::system(cmd.c_str()) != 0) throw std::runtime_error("redis-cli --cluster create failed; see " + log);
        wait_until_ok();
    }
    RedisCluster(const RedisCluster&) = delete;
    RedisCluster& operator=(const RedisCluster&) = delete;

    [[nodiscard]] std::string host() const { return "127.0.0.1"; }
    /// The first node: the seed clients are given.
    [[nodiscard]] int port() const noexcept { return nodes_.front()->port(); }
    [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
    [[nodiscard]] RedisServer& node(std::size_t i) { return *nodes_.at(i); }

    /// The index of the node serving `slot` as a master now, or -1.
    [[nodiscard]] int master_of(int slot) const {
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            if (!nodes_[i]->running()) continue;
            const auto out = run(nodes_[i]->port(), "CLUSTER NODES");
            for (std::size_t at = 0; at < out.size();) {
                auto end = out.find('\n', at);
                if (end == std::string::npos) end = out.size();
                const auto line = out.substr(at, end - at);
                at = end + 1;
                if (line.find("myself") == std::string::npos || line.find("master") == std::string::npos) continue;
                // ... <slot ranges> at the end: "0-5460 5461" etc.
                for (std::size_t p = 0; p < line.size();) {
                    auto sp = line.find(' ', p);
                    if (sp == std::string::npos) sp = line.size();
                    const auto tok = line.substr(p, sp - p);
                    p = sp + 1;
                    if (tok.empty() || tok.front() < '0' || tok.front() > '9') continue;
                    const auto dash = tok.find('-');
                    try {
                        const int a = std::stoi(tok.substr(0, dash));
                        const int b = dash == std::string::npos ? a : std::stoi(tok.substr(dash + 1));
                        if (tok.find(':') == std::string::npos && slot >= a && slot <= b) return static_cast<int>(i);
                    } catch (const std::exception&) {
                    }
                }
            }
        }
        return -1;
    }

    /// The slot of a key or channel name, as the cluster computes it (CLUSTER KEYSLOT).
    [[nodiscard]] int slot_of(const std::string& name) const {
        return std::stoi(run(port(), "CLUSTER KEYSLOT '" + name + "'"));
    }

    /// The output of `redis-cli -p PORT ARGS` (ARGS split on spaces by the shell).
    [[nodiscard]] static std::string run(int port, const std::string& args) {
        const std::string cmd = cli() + " -p " + std::to_string(port) + " " + args + " 2>&1";
        std::string out;
        if (FILE* f = ::popen(cmd.c_str(), "r")) {
            char buf[4096];
            std::size_t n = 0;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
            ::pclose(f);
        }
        return out;
    }

    /// Waits until every running node reports cluster_state:ok (and, after a failover, agrees).
    void wait_until_ok(std::chrono::seconds limit = std::chrono::seconds{30}) const {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            bool ok = true;
            for (const auto& n : nodes_)
                if (n->running() && run(n->port(), "CLUSTER INFO").find("cluster_state:ok") == std::string::npos) ok = false;
            if (ok) return;
            std::this_thread::sleep_for(std::chrono::milliseconds{100});
        }
        throw std::runtime_error("redis cluster did not reach cluster_state:ok");
    }

private:
    static std::string cli() {
        const char* env = std::getenv("WSGATE_REDIS_CLI");
        return env != nullptr && *env != '\0' ? env : "/usr/bin/redis-cli";
    }

    std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace wsgate::test
