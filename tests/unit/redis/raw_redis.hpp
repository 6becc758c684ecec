#pragma once
// The test's own hiredis connection, to look at (and tamper with) what the Redis backends wrote.

#include "catch.hpp"

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wsgate::test {

class RawRedis {
public:
    explicit RawRedis(int port) {
        c_ = redisConnect("127.0.0.1", port);
        REQUIRE(c_ != nullptr);
        REQUIRE(c_->err == 0);
    }
    RawRedis(const RawRedis&) = delete;
    RawRedis& operator=(const RawRedis&) = delete;
    ~RawRedis() { redisFree(c_); }

    struct Result {
        int type = 0;
        long long integer = 0;
        std::string str;
        std::vector<std::string> items;
    };
    Result cmd(const std::vector<std::string>& args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
        REQUIRE(r != nullptr);
        Result out;
        out.type = r->type;
        out.integer = r->integer;
        if (r->str != nullptr) out.str.assign(r->str, r->len);
        for (std::size_t i = 0; i < r->elements; ++i)
            out.items.emplace_back(r->element[i]->str != nullptr ? std::string(r->element[i]->str, r->element[i]->len)
                                                                  : std::string{});
        freeReplyObject(r);
        return out;
    }
    long long integer(const std::vector<std::string>& args) { return cmd(args).integer; }

    /// `calls` of one command in INFO commandstats.
    long long calls(const std::string& command) {
        const auto info = cmd({"INFO", "commandstats"}).str;
        const auto key = "cmdstat_" + command + ":calls=";
        const auto pos = info.find(key);
        if (pos == std::string::npos) return 0;
        return std::stoll(info.substr(pos + key.size()));
    }

private:
    redisContext* c_ = nullptr;
};

}  // namespace wsgate::test
