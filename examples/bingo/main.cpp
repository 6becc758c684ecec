// Seed 001, the conference bingo game: user session tokens and public device tokens.
//
// Players connect with a session token; the lobby's status board gets a public device token
// (`POST /public/token` in the seed: 30 days, a random device id, `read_leaderboard` and
// `read_events`). Messages are routed by `action`:
//   {"action":"subscribe","gameId":"g1"}        → game g1's events (needs read_events)
//   {"action":"get_leaderboard","gameId":"g1"}  → the current leaderboard (needs read_leaderboard)
//   {"action":"mark_word","gameId":"g1","word":…} → players only: activity_event and
//                                                   leaderboard_update to g1's subscribers only
// The public board reads but cannot act: mark_word from it gets 403.
//
//   bingo_example           prints what each client receives
//   bingo_example --check   also verifies it and exits 1 on any difference
#include <wsgate/auth.hpp>
#include <wsgate/wsgate.hpp>

#include <cstring>
#include <iostream>
#include <map>
#include <mutex>

using namespace std::chrono_literals;

namespace {

/// Scores per game (the host's own state; the seed kept it in DynamoDB).
class Scores {
public:
    nlohmann::json mark(const std::string& game, const std::string& player) {
        std::lock_guard lock(mu_);
        ++scores_[game][player];
        return board_locked(game);
    }
    nlohmann::json board(const std::string& game) {
        std::lock_guard lock(mu_);
        return board_locked(game);
    }

private:
    nlohmann::json board_locked(const std::string& game) {
        std::vector<std::pair<std::string, int>> rows(scores_[game].begin(), scores_[game].end());
        std::stable_sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second > b.second; });
        nlohmann::json out = nlohmann::json::array();
        for (auto& [player, score] : rows) out.push_back({{"nickname", player}, {"score", score}});
        return out;
    }
    std::mutex mu_;
    std::map<std::string, std::map<std::string, int>> scores_;
};

std::string game_of(wsgate::MessageContext& ctx) {
    auto it = ctx.message().find("gameId");
    if (it == ctx.message().end() || !it->is_string() || it->get_ref<const std::string&>().empty() ||
        it->get_ref<const std::string&>().size() > 64) {
        ctx.reply_error(400, "gameId must be a string of 1 to 64 characters");
        return {};
    }
    return it->get<std::string>();
}

}  // namespace

int main(int argc, char** argv) {
    const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    auto clock = std::make_shared<wsgate::ManualClock>(std::chrono::system_clock::now());
    const auto session_secret = wsgate::random_token(32);
    const auto public_secret = wsgate::random_token(32);

    // Status boards read events and leaderboards; nothing else.
    wsgate::PublicTokenSettings pts;
    pts.default_permissions = {"read_leaderboard", "read_events"};
    pts.issuer = "bingo";
    wsgate::PublicTokenIssuer issuer{wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, public_secret),
                                     pts, clock};
    auto sessions = wsgate::jwt::Verifier{}
                        .allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, session_secret))
                        .require_claim("exp")
                        .with_clock(clock);
    auto authorizer = std::make_shared<wsgate::TokenAuthorizer>(sessions, issuer.verifier());

    wsgate::GatewaySettings settings;
    settings.ttl = 24h;  // the seed's connection records lived a day
    settings.router.route_key = "action";
    settings.router.unknown_route = wsgate::UnknownRoutePolicy::error;
    settings.router.topic_rules = {{"game:*", "read_events", "play"}};
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::Gateway gateway{settings, store, transport, authorizer, clock};

    Scores scores;
    auto& router = gateway.router();
    router.on("subscribe", [&](wsgate::MessageContext& ctx) {
        auto game = game_of(ctx);
        if (game.empty()) return;
        const auto topic = "game:" + game;
        if (auto r = ctx.gateway().subscribe(ctx.connection(), topic); !r)
            return ctx.reply_error(wsgate::status_of(r.error),
                                   r.error.message());
        ctx.ack({{"action", "subscribe"}, {"gameId", game}});
    });
    router.on("get_leaderboard", [&](wsgate::MessageContext& ctx) {
        auto game = game_of(ctx);
        if (game.empty()) return;
        if (!ctx.principal().has_permission("read_leaderboard") && ctx.principal().kind == wsgate::PrincipalKind::public_device)
            return ctx.reply_error(403, "read_leaderboard required");
        auto board = scores.board(game);
        ctx.reply(wsgate::Envelope{"leaderboard_update"}.field("gameId", game).field("totalPlayers", board.size())
                      .field("leaderboard", board));
    });
    router.on("mark_word", [&](wsgate::MessageContext& ctx) {
        auto game = game_of(ctx);
        if (game.empty()) return;
        const auto topic = "game:" + game;
        if (!ctx.gateway().may_publish(ctx.principal(), topic)) return ctx.reply_error(403, "players only");
        auto word = ctx.message().value("word", std::string{});
        if (word.empty() || word.size() > 64) return ctx.reply_error(400, "word must be 1 to 64 characters");
        const auto& player = ctx.principal().nickname.empty() ? ctx.principal().user_id : ctx.principal().nickname;
        auto board = scores.mark(game, player);
        const auto now = wsgate::format_iso8601(ctx.now());
        ctx.publish(wsgate::Envelope{"activity_event"}.field("gameId", game).field(
                        "event", {{"id", wsgate::random_token(9)},
                                  {"type", "word_marked"},
                                  {"data", {{"player", player}, {"word", word}}},
                                  {"timestamp", now}}),
                    wsgate::Audience::topic(topic));
        ctx.publish(wsgate::Envelope{"leaderboard_update"}.field("gameId", game).field("leaderboard", board)
                        .field("totalPlayers", board.size()),
                    wsgate::Audience::topic(topic));
        ctx.ack({{"action", "mark_word"}});
    });

    auto session_token = [&](const std::string& user, const std::string& nick) {
        return wsgate::jwt::sign({{"sub", user}, {"sid", wsgate::random_token(8)}, {"nickname", nick},
                                  {"permissions", {"play", "read_events", "read_leaderboard"}},
                                  {"iat", wsgate::to_unix_seconds(clock->now())},
                                  {"exp", wsgate::to_unix_seconds(clock->now() + 1h)}},
                                 wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, session_secret));
    };
    auto connect = [&](const std::string& token) {
        wsgate::ConnectRequest req;
        req.connection_id = wsgate::make_connection_id();
        req.query["token"] = token;
        transport->open(req.connection_id);
        auto r = gateway.on_connect(req);
        if (!r.accepted) std::cout << "refused: " << r.status << ' ' << r.reason << '\n';
        return r.accepted ? r.id : wsgate::ConnectionId{};
    };

    auto board_token = issuer.issue({});  // what POST /public/token returns
    std::cout << "public token issued: " << nlohmann::json{{"deviceId", board_token->device_id},
                                                           {"permissions", board_token->permissions}}
              << '\n';
    auto ann = connect(session_token("u-ann", "Ann"));
    auto bob = connect(session_token("u-bob", "Bob"));
    auto lobby = connect(board_token->token);
    auto nobody = connect("");
    auto expired = [&] {
        clock->advance(-2h);
        auto t = session_token("u-old", "Old");
        clock->advance(2h);
        return connect(t);
    }();

    gateway.on_message(ann, R"({"action":"subscribe","gameId":"g1"})");
    gateway.on_message(bob, R"({"action":"subscribe","gameId":"g2"})");
    gateway.on_message(lobby, R"({"action":"subscribe","gameId":"g1"})");
    gateway.on_message(ann, R"({"action":"mark_word","gameId":"g1","word":"synergy"})");
    gateway.on_message(lobby, R"({"action":"mark_word","gameId":"g1","word":"cheat"})");
    gateway.on_message(lobby, R"({"action":"get_leaderboard","gameId":"g1"})");

    std::map<std::string, std::vector<nlohmann::json>> got;
    for (auto& [name, id] : std::map<std::string, wsgate::ConnectionId>{{"ann", ann}, {"bob", bob}, {"lobby", lobby}})
        for (auto& f : transport->drain(id)) {
            std::cout << name << " <- " << f << '\n';
            got[name].push_back(nlohmann::json::parse(f));
        }

    if (!check) return 0;
    auto types = [&](const std::string& who) {
        std::vector<std::string> out;
        for (auto& j : got[who]) out.push_back(j["type"].get<std::string>() + (j.contains("status") ? j["status"].dump() : ""));
        return out;
    };
    bool ok = !ann.empty() && !bob.empty() && !lobby.empty() && nobody.empty() && expired.empty() &&
              types("ann") == std::vector<std::string>{"ack", "activity_event", "leaderboard_update", "ack"} &&
              types("bob") == std::vector<std::string>{"ack"} &&
              types("lobby") == std::vector<std::string>{"ack", "activity_event", "leaderboard_update", "error403",
                                                         "leaderboard_update"} &&
              got["lobby"][4]["leaderboard"][0]["nickname"] == "Ann" && got["lobby"][4]["leaderboard"][0]["score"] == 1;
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}
