// Headless Chromium loads the status board from examples/realtime_server, sees "connected",
// shows a published event, recovers the events published while its socket was down, and
// reconnects by itself (and resyncs) after the server restarts
// (tests/e2e/browser/status_board.e2e.mjs, run with Node and playwright-core).
#include "catch.hpp"
#include "process.hpp"

#include <filesystem>
#include <iostream>

using namespace std::chrono_literals;

TEST_CASE("the status board page connects, shows events, recovers missed ones and reconnects after a restart",
          "[e2e][browser]") {
    auto dir = std::filesystem::path(WSGATE_BINARY_DIR) / "e2e-tmp";
    std::filesystem::create_directories(dir);
    const auto log = (dir / "browser.log").string();
    wsgate::test::ChildProcess node({WSGATE_NODE, WSGATE_SOURCE_DIR "/tests/e2e/browser/status_board.e2e.mjs",
                                     "--server", WSGATE_REALTIME_SERVER, "--chromium", WSGATE_CHROMIUM,
                                     "--tmp", dir.string()},
                                    log, /*own_group=*/true);
    REQUIRE(node.started());
    const int rc = node.wait(180s);
    const auto out = wsgate::test::slurp(log);
    std::cout << out;
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("[browser-e2e] PASS") != std::string::npos);
}
