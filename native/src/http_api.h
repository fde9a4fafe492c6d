// The HTTP/1.1 API of native/API.md: bearer-token auth, JSON errors, one evaluation at a
// time (429 with Retry-After when busy), streamed NDJSON with cancel-on-disconnect. Routes
// are listed once in a table (ApiServer::kRoutes) over named handlers, as llama.cpp's
// tools/server does; the connection layer beneath is http_transport.h.
#pragma once

#include "evaluations.h"
#include "http_transport.h"
#include "model_session.h"
#include "policy.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

namespace moelens {

struct ServerConfig {
    LoadOptions load;
    std::string host = "127.0.0.1";  // numeric and checked (bind_address.h) unless allow_remote
    int port = 0;
    bool allow_remote = false;
    size_t max_body = 16u << 20;
    std::string token;
    std::string predictor_path;
    std::string router_pack_path;  // docs/router-packs.md; switchable later through /v1/router-pack
    TransportLimits transport;
};

bool constant_time_equals(const std::string & a, const std::string & b);

class ApiServer {
public:
    ApiServer(ServerConfig config, std::unique_ptr<ModelSession> session);
    ~ApiServer();
    int bind();    // returns the bound port; throws UserError
    void serve();  // blocks until stop()
    // Stops listening and makes a running evaluation stop at its next ubatch. Any thread.
    void stop();

private:
    using Handler = void (ApiServer::*)(const httplib::Request &, httplib::Response &);
    struct Route {
        const char * method;
        const char * path;
        Handler handler;
    };
    static const Route kRoutes[];

    using ModelLock = std::unique_lock<std::mutex>;

    void install_routes();

    void handle_health(const httplib::Request & req, httplib::Response & res);
    void handle_model(const httplib::Request & req, httplib::Response & res);
    void handle_tokenize(const httplib::Request & req, httplib::Response & res);
    void handle_trace(const httplib::Request & req, httplib::Response & res);
    void handle_generate(const httplib::Request & req, httplib::Response & res);
    void handle_perplexity(const httplib::Request & req, httplib::Response & res);
    void handle_calibrate(const httplib::Request & req, httplib::Response & res);
    void handle_predictor(const httplib::Request & req, httplib::Response & res);
    void handle_speed(const httplib::Request & req, httplib::Response & res);
    void handle_router_pack(const httplib::Request & req, httplib::Response & res);

    // Takes the model for one request, or throws 429 after 2 s.
    std::shared_ptr<ModelLock> acquire_model();
    // The request's policy, checked against the model; reloads the model when its max_k
    // needs other expert slots than loaded. Needs the model lock.
    Policy read_policy(const nlohmann::json & body);
    void ensure_expert_slots(const Policy & policy);
    const AntPredictor * predictor_for(const Policy & policy) const;
    // llama_decode's abort check for one evaluation: the client is gone or the server stops.
    std::function<bool()> abort_check(std::function<bool()> client_gone);
    // Runs `work` inside a chunked NDJSON response that holds `lock` until it ends.
    void stream(httplib::Response & res, std::shared_ptr<ModelLock> lock, std::function<void(const Emit &)> work);
    // Refreshes what GET /v1/model reports; called after the model or predictor changed.
    void publish_model_info();

    ServerConfig config_;
    std::unique_ptr<GuardedServer> http_;
    std::atomic<bool> stopping_{false};

    // Locking. model_mutex_ is held for every evaluation (and for replacing the model or the
    // predictor), so session_ and predictor_ are stable while it is held. Routes that only
    // read the vocabulary (tokenize) take session_mutex_ shared instead, so they run beside
    // an evaluation; replacing session_ also takes it exclusively. GET routes never wait:
    // /health tries the model lock, /v1/model reads a snapshot under snapshot_mutex_.
    std::mutex model_mutex_;
    std::shared_mutex session_mutex_;
    std::unique_ptr<ModelSession> session_;
    int base_k_ = 0;  // expert slots as loaded at start (with --override-kv)
    std::optional<AntPredictor> predictor_;
    std::mutex snapshot_mutex_;
    std::string model_info_;  // /v1/model's body without predictor_loaded
    bool predictor_loaded_ = false;
};

}  // namespace moelens
