#pragma once
// realtime_server's command line: flags (then environment variables, then defaults), the App
// settings they give, and the start-up banner. Unknown flags and missing values end the program with status 2.

#include <wsgate/beast/app.hpp>

#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace demo {

struct Options {
    std::map<std::string, std::string> values;
    [[nodiscard]] bool has(const std::string& k) const { return values.count(k) != 0; }
    /// Flag first, then environment variable `env` (may be null), then `def`.
    [[nodiscard]] std::string get(const std::string& flag, const char* env, std::string def = {}) const;
};

/// Parses argv; prints the usage and exits on --help (0) or a bad command line (2).
Options parse(int argc, char** argv);

/// The App settings the flags give: listen address and port, threads, limits, queue, topic rules,
/// node id and lease. Exits with status 2 on a value that is not a number.
wsgate::beast::AppSettings app_settings(const Options& o, const std::string& default_web_root);

/// The start-up banner: where the server listens, the store and auth lines, generated development
/// secrets (and the admin key itself when it was generated, `dev_admin_key`), how to connect.
void print_banner(std::ostream& out, const wsgate::beast::ServerSettings& ss, unsigned short port,
                  const std::string& store_line, const std::string& auth_line,
                  const std::vector<std::string>& generated, const std::string& dev_admin_key);

}  // namespace demo
