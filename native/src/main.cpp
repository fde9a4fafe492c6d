// moe-lens-server: loads a GGUF MoE model and serves routing traces, gating policies,
// perplexity and generation over loopback HTTP. Flags follow llama.cpp's tools; the
// protocol is native/API.md.
//
// Lifetime: the server stops on SIGINT, SIGTERM or SIGHUP, when its parent dies (Linux:
// PR_SET_PDEATHSIG), and with --exit-with-stdin when its stdin reaches end of file, which
// happens on every platform when the parent that holds the pipe's other end exits, however
// it was killed. Stopping aborts a running evaluation at its next ubatch.
#include "bind_address.h"
#include "http_api.h"
#include "model_session.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#if defined(__linux__)
#include <sys/prctl.h>
#include <unistd.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace moelens;
using nlohmann::json;

// Set from signal handlers (only a lock-free atomic store there); the watcher thread acts on it.
static std::atomic<bool> g_stop_requested{false};

static void on_signal(int) { g_stop_requested.store(true); }

static void usage() {
    std::fprintf(stderr,
                 "usage: moe-lens-server -m MODEL [-c N] [-t N] [-ngl N] [--host ADDR] [--port N]\n"
                 "                       [--override-kv KEY=TYPE:VALUE]... [--allow-remote] [--max-body BYTES]\n"
                 "                       [--predictor FILE] [--router-pack FILE] [--rpc HOST:PORT,...] [--request-timeout SECONDS]\n"
                 "                       [--exit-with-stdin]\n"
                 "Serves the MoE Lens API (native/API.md). Needs MOE_LENS_TOKEN, or prints a generated token.\n");
}

static void fail_line(const std::string & message, int status) {
    std::printf("%s\n", json{{"event", "error"}, {"message", message}}.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "moe-lens-server: %s\n", message.c_str());
    std::exit(status);
}

static int to_int(const std::string & flag, const std::string & v) {
    try {
        size_t used = 0;
        const int x = std::stoi(v, &used);
        if (used == v.size()) return x;
    } catch (...) {}
    fail_line("flag " + flag + " needs an integer, got '" + v + "'", 2);
    return 0;
}

static std::string random_token() {
    std::random_device rd;
    static const char hex[] = "0123456789abcdef";
    std::string t;
    for (int i = 0; i < 32; ++i) {
        const unsigned v = rd() & 0xFF;
        t += hex[v >> 4];
        t += hex[v & 15];
    }
    return t;
}

// Ends the server when the parent goes away (see the top of this file).
static void watch_parent(bool exit_with_stdin) {
#if defined(__linux__)
    const pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) g_stop_requested.store(true);  // it died before prctl took effect
#endif
    if (exit_with_stdin) {
        std::thread([] {
            char buf[256];
            while (std::fread(buf, 1, sizeof(buf), stdin) > 0) {}
            g_stop_requested.store(true);
        }).detach();
    }
}

int main(int argc, char ** argv) {
#if defined(__GLIBC__)
    // Blocks of 1 MB and more (llama.cpp's compute buffers and logits, large request bodies)
    // are mapped and unmapped, not carved from the heap: glibc otherwise raises this threshold
    // after the first large free, and the memory of every later large request stays resident.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    // Each connection runs on a new thread, and glibc would give the threads up to 8 arenas
    // per core, each keeping its own freed memory; two are enough for request handling.
    mallopt(M_ARENA_MAX, 2);
#endif
    ServerConfig cfg;
    bool exit_with_stdin = false;
    cfg.load.n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail_line("flag " + a + " needs a value", 2);
            return argv[++i];
        };
        if (a == "-m" || a == "--model")
            cfg.load.model_path = value();
        else if (a == "-c" || a == "--ctx-size")
            cfg.load.n_ctx = to_int(a, value());
        else if (a == "-t" || a == "--threads")
            cfg.load.n_threads = to_int(a, value());
        else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers")
            cfg.load.n_gpu_layers = to_int(a, value());
        else if (a == "--host")
            cfg.host = value();
        else if (a == "--port")
            cfg.port = to_int(a, value());
        else if (a == "--override-kv")
            cfg.load.override_kv.push_back(value());
        else if (a == "--allow-remote")
            cfg.allow_remote = true;
        else if (a == "--max-body")
            cfg.max_body = size_t(std::max(1, to_int(a, value())));
        else if (a == "--predictor")
            cfg.predictor_path = value();
        else if (a == "--router-pack")
            cfg.router_pack_path = value();
        else if (a == "--rpc") {
            const std::string list = value();
            size_t start = 0;
            while (start <= list.size()) {
                const size_t comma = list.find(',', start);
                const std::string endpoint = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                if (endpoint.empty() || endpoint.find(':') == std::string::npos)
                    fail_line("--rpc takes HOST:PORT[,HOST:PORT...], got '" + list + "'", 2);
                cfg.load.rpc_servers.push_back(endpoint);
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else if (a == "--request-timeout")
            cfg.transport.request_timeout_s = to_int(a, value());
        else if (a == "--exit-with-stdin")
            exit_with_stdin = true;
        else if (a == "-h" || a == "--help") {
            usage();
            return 0;
        } else {
            usage();
            fail_line("unknown flag " + a, 2);
        }
    }
    if (cfg.load.model_path.empty()) {
        usage();
        fail_line("no model given (-m MODEL)", 2);
    }
    if (cfg.load.n_ctx < 8) fail_line("-c must be at least 8", 2);
    if (cfg.port < 0 || cfg.port > 65535) fail_line("--port must be in [0, 65535]", 2);
    if (cfg.transport.request_timeout_s < 1) fail_line("--request-timeout must be at least 1 second", 2);
    // Resolve and check the bind address before spending time on the model.
    try {
        cfg.host = choose_bind_address(cfg.host, cfg.allow_remote ? std::vector<std::string>{} : resolve_host(cfg.host), cfg.allow_remote);
    } catch (const UserError & e) { fail_line(e.what(), 2); }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
#ifdef SIGHUP
    std::signal(SIGHUP, on_signal);
#endif
#ifdef SIGPIPE
    std::signal(SIGPIPE, SIG_IGN);
#endif
    watch_parent(exit_with_stdin);

    const char * env_token = std::getenv("MOE_LENS_TOKEN");
    const bool generated = !(env_token && *env_token);
    cfg.token = generated ? random_token() : std::string(env_token);

    try {
        auto session = ModelSession::load(cfg.load);
        if (g_stop_requested) return 0;
        ApiServer server(cfg, std::move(session));
        const int port = server.bind();
        // Acts on a stop request; if the server has not wound down 10 s later, exits anyway.
        std::atomic<bool> stop_returned{false};
        std::thread([&server, &stop_returned] {
            while (!g_stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            server.stop();
            stop_returned.store(true);
            std::this_thread::sleep_for(std::chrono::seconds(10));
            std::fprintf(stderr, "moe-lens-server: did not stop within 10 s; exiting\n");
            std::_Exit(0);
        }).detach();
        // On every way out of this block, the server outlives the watcher's stop() call (a TSan
        // finding: ~ApiServer ran while httplib's stop() was still writing to the server).
        struct AwaitStop {
            std::atomic<bool> & returned;
            ~AwaitStop() {
                g_stop_requested.store(true);
                while (!returned.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
        } await_stop{stop_returned};
        json ready = {{"event", "ready"}, {"host", cfg.host}, {"port", port}, {"model", cfg.load.model_path}};
        if (generated) ready["token"] = cfg.token;
        std::printf("%s\n", ready.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
        std::fflush(stdout);
        server.serve();
    } catch (const UserError & e) { fail_line(e.what(), 1); } catch (const std::exception & e) {
        fail_line(std::string("unexpected error: ") + e.what(), 1);
    }
    return 0;
}
