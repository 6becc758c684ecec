// Seed 001, the conference bingo game: user session tokens and public device tokens.
//
// Players connect with a session token; the lobby's status board gets a public device token
// (`POST /public/token` in the seed: 30 days, a random device id, `read_leaderboard` and
// `read_events`). Messages are routed by `action`:
//   {"action":"join_game","gameId":"g1"}        → players only: `player_joined`
//   {"action":"mark_word","gameId":"g1","word":…} → players only: `word_marked`, and
//                                                   `bingo_completed` at the third word
//   {"action":"get_leaderboard","gameId":"g1"}  → the current leaderboard (needs read_leaderboard)
//   {"action":"subscribe","gameId":"g1"}        → game g1's events (needs read_events)
// Each game event goes out as the seed's pair: an `activity_event` then a `leaderboard_update`.
// As in the seed they go to every connection (clients never subscribe and filter on `gameId`);
// with --subscriptions they go only to the game's subscribers (topic `game:<id>`).
// The public board reads but cannot act: mark_word from it gets 403. Connection records live
// 24 h (the seed's TTL); the status board only listens, which the server's pings keep alive.
//
//   bingo_example [--subscriptions]           prints what each client receives
//   bingo_example [--subscriptions] --check   also verifies it and exits 1 on any difference
#include <wsgate/auth.hpp>
#include <wsgate/wsgate.hpp>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>

using namespace std::chrono_literals;

namespace {

/// Scores per game (the host's own state; the seed kept it in DynamoDB).
class Scores {
public:
    /// Adds the player with no points; false if already in the game.
    bool join(const std::string& game, const std::string& player) {
        std::lock_guard lock(mu_);
        return scores_[game].emplace(player, 0).second;
    }
    /// One more marked word; returns the player's score.
    int mark(const std::string& game, const std::string& player) {
        std::lock_guard lock(mu_);
        return ++scores_[game][player];
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

constexpr int bingo_words = 3;  // words a player marks to complete a (demo-sized) bingo

}  // namespace

int main(int argc, char** argv) {
    bool check = false;
    bool subscriptions = false;  // the seed broadcasts to everyone; this shows per-game topics instead
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--check") == 0) check = true;
        else if (std::strcmp(argv[i], "--subscriptions") == 0) subscriptions = true;
        else {
            std::cerr << "usage: bingo_example [--subscriptions] [--check]\n";
            return 2;
        }
    }
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
    // Status boards only listen. On a real server the Beast server's keep-alive pings (every
    // 30 s by default) touch the connection, so a 10 min inactivity timeout never ends a board
    // that still answers them; only a board that stopped answering is swept.
    settings.inactivity_timeout = 10min;
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
    // The seed's addEvent(): an activity_event, then the updated leaderboard, to everyone (or
    // to the game's subscribers with --subscriptions).
    auto game_event = [&](wsgate::MessageContext& ctx, const std::string& game, const std::string& type,
                          nlohmann::json data) {
        const auto audience = subscriptions ? wsgate::Audience::topic("game:" + game) : wsgate::Audience::everyone();
        const auto now = wsgate::format_iso8601(ctx.now());
        data["gameId"] = game;
        ctx.publish(wsgate::Envelope{"activity_event"}.field("gameId", game).field(
                        "event", {{"id", wsgate::random_token(9)}, {"type", type}, {"data", std::move(data)},
                                  {"timestamp", now}}),
                    audience);
        auto board = scores.board(game);
        ctx.publish(wsgate::Envelope{"leaderboard_update"}.field("gameId", game).field("leaderboard", board)
                        .field("totalPlayers", board.size()),
                    audience);
    };
    // Only players (the `play` permission) act; public boards read.
    auto player_of = [](wsgate::MessageContext& ctx) -> std::string {
        if (!ctx.principal().has_permission("play")) return {};
        return ctx.principal().nickname.empty() ? ctx.principal().user_id : ctx.principal().nickname;
    };
    router.on("join_game", [&](wsgate::MessageContext& ctx) {
        auto game = game_of(ctx);
        if (game.empty()) return;
        const auto player = player_of(ctx);
        if (player.empty()) return ctx.reply_error(403, "players only");
        if (scores.join(game, player)) game_event(ctx, game, "player_joined", {{"player", player}});
        ctx.ack({{"action", "join_game"}, {"gameId", game}});
    });
    router.on("mark_word", [&](wsgate::MessageContext& ctx) {
        auto game = game_of(ctx);
        if (game.empty()) return;
        const auto player = player_of(ctx);
        if (player.empty()) return ctx.reply_error(403, "players only");
        auto word = ctx.message().value("word", std::string{});
        if (word.empty() || word.size() > 64) return ctx.reply_error(400, "word must be 1 to 64 characters");
        const int score = scores.mark(game, player);
        game_event(ctx, game, "word_marked", {{"player", player}, {"word", word}});
        if (score == bingo_words) game_event(ctx, game, "bingo_completed", {{"player", player}, {"words", score}});
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

    auto board_token = issuer.issue({});
    // What POST /public/token returns, in the seed's shape (the token itself left out of the log).
    auto issued = wsgate::public_token_response(*board_token, {.public_token_field = true});
    issued.erase("token");
    issued.erase("publicToken");
    std::cout << "public token issued: " << issued << '\n';
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

    // With --subscriptions the clients follow their game; in the seed's mode nobody subscribes.
    if (subscriptions) {
        gateway.on_message(ann, R"({"action":"subscribe","gameId":"g1"})");
        gateway.on_message(bob, R"({"action":"subscribe","gameId":"g2"})");
        gateway.on_message(lobby, R"({"action":"subscribe","gameId":"g1"})");
    }
    gateway.on_message(ann, R"({"action":"join_game","gameId":"g1"})");
    gateway.on_message(ann, R"({"action":"mark_word","gameId":"g1","word":"synergy"})");
    gateway.on_message(lobby, R"({"action":"mark_word","gameId":"g1","word":"cheat"})");
    gateway.on_message(ann, R"({"action":"mark_word","gameId":"g1","word":"pivot"})");
    gateway.on_message(ann, R"({"action":"mark_word","gameId":"g1","word":"leverage"})");  // bingo
    gateway.on_message(lobby, R"({"action":"get_leaderboard","gameId":"g1"})");

    std::map<std::string, std::vector<nlohmann::json>> got;
    for (auto& [name, id] : std::map<std::string, wsgate::ConnectionId>{{"ann", ann}, {"bob", bob}, {"lobby", lobby}})
        for (auto& f : transport->drain(id)) {
            std::cout << name << " <- " << f << '\n';
            got[name].push_back(nlohmann::json::parse(f));
        }

    if (!check) return 0;
    // What a client hears of game g1: each activity_event by its event type, each
    // leaderboard_update by its leader's score, errors by status; acks are left out.
    auto heard = [&](const std::string& who) {
        std::vector<std::string> out;
        for (auto& j : got[who]) {
            const auto type = j.value("type", "");
            if (type == "activity_event" && j["gameId"] == "g1" && j["event"]["data"]["gameId"] == "g1" &&
                j["event"].contains("id") && j["event"].contains("timestamp") && j.contains("timestamp"))
                out.push_back(j["event"]["type"].get<std::string>());
            else if (type == "leaderboard_update" && j["gameId"] == "g1" && j.contains("timestamp") &&
                     j["totalPlayers"] == j["leaderboard"].size())
                out.push_back("leaderboard:" + j["leaderboard"][0]["score"].dump());
            else if (type == "error")
                out.push_back("error" + j["status"].dump());
            else if (type != "ack")
                out.push_back("unexpected " + j.dump());
        }
        return out;
    };
    const std::vector<std::string> game = {"player_joined",   "leaderboard:0", "word_marked", "leaderboard:1",
                                           "word_marked",     "leaderboard:2", "word_marked", "leaderboard:3",
                                           "bingo_completed", "leaderboard:3"};
    auto lobby_heard = game;
    lobby_heard.insert(lobby_heard.begin() + 4, "error403");  // its mark_word, between Ann's first and second
    lobby_heard.push_back("leaderboard:3");                   // the get_leaderboard reply
    const auto acks = [&](const std::string& who) {
        return std::count_if(got[who].begin(), got[who].end(), [](auto& j) { return j.value("type", "") == "ack"; });
    };
    bool ok = !ann.empty() && !bob.empty() && !lobby.empty() && nobody.empty() && expired.empty() &&
              heard("ann") == game && heard("lobby") == lobby_heard &&
              // Bob plays g2: in the seed's mode he hears g1 too (and filters on gameId); with
              // --subscriptions he hears nothing of it.
              heard("bob") == (subscriptions ? std::vector<std::string>{} : game) &&
              acks("ann") == (subscriptions ? 5 : 4) && acks("bob") == (subscriptions ? 1 : 0) &&
              got["lobby"].back()["leaderboard"][0]["nickname"] == "Ann" &&
              got["lobby"].back()["leaderboard"][0]["score"] == bingo_words;
    if (!ok) {
        for (const char* who : {"ann", "bob", "lobby"}) {
            std::cout << who << " heard:";
            for (auto& h : heard(who)) std::cout << ' ' << h;
            std::cout << '\n';
        }
    }
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}
