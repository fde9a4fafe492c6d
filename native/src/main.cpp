// moe-lens-server: loads a GGUF MoE model and serves routing traces, gating policies,
// perplexity and generation over loopback HTTP. Flags follow llama.cpp's tools; the
// protocol is native/API.md.
#include "http_api.h"
#include "model_session.h"

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

using namespace moelens;
using nlohmann::json;

static ApiServer * g_server = nullptr;

static void on_signal(int) {
    if (g_server) g_server->stop();
}

static void usage() {
    std::fprintf(stderr,
        "usage: moe-lens-server -m MODEL [-c N] [-t N] [-ngl N] [--host ADDR] [--port N]\n"
        "                       [--override-kv KEY=TYPE:VALUE]... [--allow-remote] [--max-body BYTES]\n"
        "                       [--predictor FILE] [--rpc HOST:PORT,...]\n"
        "Serves the MoE Lens API (native/API.md). Needs MOE_LENS_TOKEN, or prints a generated token.\n");
}

static void fail_line(const std::string & message, int status) {
    std::printf("%s\n", json{{"event", "error"}, {"message", message}}.dump().c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "moe-lens-server: %s\n", message.c_str());
    std::exit(status);
}

static int to_int(const std::string & flag, const std::string & v) {
    try {
        size_t used = 0;
        const int x = std::stoi(v, &used);
        if (used == v.size()) return x;
    } catch (...) {
    }
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

int main(int argc, char ** argv) {
    ServerConfig cfg;
    cfg.load.n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail_line("flag " + a + " needs a value", 2);
            return argv[++i];
        };
        if (a == "-m" || a == "--model") cfg.load.model_path = value();
        else if (a == "-c" || a == "--ctx-size") cfg.load.n_ctx = to_int(a, value());
        else if (a == "-t" || a == "--threads") cfg.load.n_threads = to_int(a, value());
        else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers") cfg.load.n_gpu_layers = to_int(a, value());
        else if (a == "--host") cfg.host = value();
        else if (a == "--port") cfg.port = to_int(a, value());
        else if (a == "--override-kv") cfg.load.override_kv.push_back(value());
        else if (a == "--allow-remote") cfg.allow_remote = true;
        else if (a == "--max-body") cfg.max_body = size_t(to_int(a, value()));
        else if (a == "--predictor") cfg.predictor_path = value();
        else if (a == "--rpc") {
            const std::string list = value();
            size_t start = 0;
            while (start <= list.size()) {
                const size_t comma = list.find(',', start);
                const std::string endpoint = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                if (endpoint.empty() || endpoint.find(':') == std::string::npos) fail_line("--rpc takes HOST:PORT[,HOST:PORT...], got '" + list + "'", 2);
                cfg.load.rpc_servers.push_back(endpoint);
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        }
        else if (a == "-h" || a == "--help") { usage(); return 0; }
        else { usage(); fail_line("unknown flag " + a, 2); }
    }
    if (cfg.load.model_path.empty()) { usage(); fail_line("no model given (-m MODEL)", 2); }
    if (cfg.load.n_ctx < 8) fail_line("-c must be at least 8", 2);
    if (cfg.port < 0 || cfg.port > 65535) fail_line("--port must be in [0, 65535]", 2);
    // Refuse a non-loopback bind before spending time on the model.
    if (!is_loopback_host(cfg.host) && !cfg.allow_remote)
        fail_line("refusing to listen on non-loopback address " + cfg.host + ": pass --allow-remote to do it anyway", 2);

    const char * env_token = std::getenv("MOE_LENS_TOKEN");
    const bool generated = !(env_token && *env_token);
    cfg.token = generated ? random_token() : std::string(env_token);

    try {
        auto session = ModelSession::load(cfg.load);
        ApiServer server(cfg, std::move(session));
        const int port = server.bind();
        g_server = &server;
        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        json ready = {{"event", "ready"}, {"host", cfg.host}, {"port", port}, {"model", cfg.load.model_path}};
        if (generated) ready["token"] = cfg.token;
        std::printf("%s\n", ready.dump().c_str());
        std::fflush(stdout);
        server.serve();
        g_server = nullptr;
    } catch (const UserError & e) {
        fail_line(e.what(), 1);
    } catch (const std::exception & e) {
        fail_line(std::string("unexpected error: ") + e.what(), 1);
    }
    return 0;
}
