// Headless Chromium loads the status board from examples/realtime_server with shortened timings
// and goes through outages: live without polling on first load (token in Sec-WebSocket-Protocol),
// the seeds' events through typed handlers, recovery of missed events and a bounded send queue
// flushed after the reconnect, refused upgrades with a frozen token endpoint (deadlines, polling
// of every topic shown), a server outage past the attempt cap (back to live by itself), a hidden
// tab (closed after the delay, reconnected when visible), subscriptions never acknowledged (each
// attempt fails at its deadline), and no token in the console
// (tests/e2e/browser/status_board.e2e.mjs, run with Node and playwright-core).
#include "catch.hpp"
#include "process.hpp"

#include <filesystem>
#include <iostream>

using namespace std::chrono_literals;

TEST_CASE("the status board page recovers from every outage by itself and never shows its token",
          "[e2e][browser]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp";
    std::filesystem::create_directories(dir);
    const auto log = (dir / "browser.log").string();
    wsgate::test::ChildProcess node({WSGATE_NODE, WSGATE_SOURCE_DIR "/tests/e2e/browser/status_board.e2e.mjs",
                                     "--server", WSGATE_REALTIME_SERVER, "--chromium", WSGATE_CHROMIUM,
                                     "--tmp", dir.string()},
                                    log, /*own_group=*/true);
    REQUIRE(node.started());
    const int rc = node.wait(150s);
    const auto out = wsgate::test::slurp(log);
    std::cout << out;
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("[browser-e2e] PASS") != std::string::npos);
}
