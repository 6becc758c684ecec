// The practical limit for the load benchmark: a bare Boost.Beast broadcast server with no auth,
// no store and no routing. Connections to /sub receive; every text message on /pub is sent to
// every subscriber (one shared buffer, one async_write per message per subscriber). One io thread.
//
//   bench_bare_server --port 0 --port-file PATH [--alloc-file PATH]
//
// On SIGUSR1 the server writes its allocation count to the --alloc-file (alloc_counter.hpp);
// SIGINT and SIGTERM stop it.
#include "alloc_counter.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_set>

namespace net = boost::asio;
namespace bb = boost::beast;
namespace http = bb::http;
namespace websocket = bb::websocket;
using tcp = net::ip::tcp;

namespace {

class Session;

// Single-threaded io_context: the subscriber set needs no lock.
struct Hub {
    std::unordered_set<Session*> subs;
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket s, Hub& hub) : ws_(std::move(s)), hub_(hub) {}
    ~Session() { hub_.subs.erase(this); }

    void run() {
        http::async_read(ws_.next_layer(), buf_, req_, [self = shared_from_this()](bb::error_code ec, std::size_t) {
            if (ec) return;
            self->is_sub_ = self->req_.target() == "/sub";
            self->ws_.set_option(websocket::stream_base::timeout::suggested(bb::role_type::server));
            self->ws_.async_accept(self->req_, [self](bb::error_code ec2) {
                if (ec2) return;
                if (self->is_sub_) self->hub_.subs.insert(self.get());
                self->do_read();
            });
        });
    }

    void send(const std::shared_ptr<const std::string>& m) {
        queue_.push_back(m);
        if (queue_.size() == 1) do_write();
    }

private:
    void do_read() {
        ws_.async_read(rbuf_, [self = shared_from_this()](bb::error_code ec, std::size_t) {
            if (ec) return;
            if (!self->is_sub_) {
                auto m = std::make_shared<const std::string>(bb::buffers_to_string(self->rbuf_.data()));
                for (auto* s : self->hub_.subs) s->send(m);
            }
            self->rbuf_.consume(self->rbuf_.size());
            self->do_read();
        });
    }

    void do_write() {
        ws_.text(true);
        ws_.async_write(net::buffer(*queue_.front()), [self = shared_from_this()](bb::error_code ec, std::size_t) {
            if (ec) return;
            self->queue_.pop_front();
            if (!self->queue_.empty()) self->do_write();
        });
    }

    websocket::stream<tcp::socket> ws_;
    Hub& hub_;
    bb::flat_buffer buf_;
    bb::flat_buffer rbuf_;
    http::request<http::empty_body> req_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    bool is_sub_ = false;
};

void accept_loop(tcp::acceptor& acc, Hub& hub) {
    acc.async_accept([&acc, &hub](bb::error_code ec, tcp::socket s) {
        if (!ec) {
            s.set_option(tcp::no_delay(true));
            std::make_shared<Session>(std::move(s), hub)->run();
        }
        if (ec != net::error::operation_aborted) accept_loop(acc, hub);
    });
}

// SIGUSR1: write the allocation count and wait again; SIGINT, SIGTERM: stop.
void wait_signals(net::signal_set& sigs, net::io_context& ioc, const std::string& alloc_file) {
    sigs.async_wait([&sigs, &ioc, &alloc_file](bb::error_code ec, int sig) {
        if (ec) return;
        if (sig != SIGUSR1) {
            ioc.stop();
            return;
        }
        if (!alloc_file.empty() && !wsgate::bench::write_allocations(alloc_file.c_str()))
            std::cerr << "cannot write " << alloc_file << "\n";
        wait_signals(sigs, ioc, alloc_file);
    });
}

}  // namespace

int main(int argc, char** argv) {
    unsigned short port = 0;
    std::string port_file;
    std::string alloc_file;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--port") port = static_cast<unsigned short>(std::stoi(argv[i + 1]));
        else if (a == "--port-file") port_file = argv[i + 1];
        else if (a == "--alloc-file") alloc_file = argv[i + 1];
    }
    net::io_context ioc(1);
    Hub hub;
    tcp::acceptor acc(ioc, {net::ip::make_address("127.0.0.1"), port});
    acc.set_option(net::socket_base::reuse_address(true));
    accept_loop(acc, hub);
    net::signal_set sigs(ioc, SIGINT, SIGTERM, SIGUSR1);
    wait_signals(sigs, ioc, alloc_file);
    if (!port_file.empty()) {
        std::ofstream(port_file + ".tmp") << acc.local_endpoint().port() << "\n";
        std::rename((port_file + ".tmp").c_str(), port_file.c_str());
    }
    ioc.run();
    return 0;
}
