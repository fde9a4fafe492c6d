// The HTTP/1.1 API of native/API.md over cpp-httplib: bearer-token auth, JSON errors,
// one evaluation at a time (429 when busy), streamed NDJSON with cancel-on-disconnect.
#pragma once

#include "model_session.h"
#include "policy.h"

#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace httplib { class Server; }

namespace moelens {

struct ServerConfig {
    LoadOptions load;
    std::string host = "127.0.0.1";
    int port = 0;
    bool allow_remote = false;
    size_t max_body = 16u << 20;
    std::string token;
    std::string predictor_path;
};

bool is_loopback_host(const std::string & host);
bool is_valid_utf8(const std::string & s);
bool constant_time_equals(const std::string & a, const std::string & b);

class ApiServer {
public:
    ApiServer(ServerConfig config, std::unique_ptr<ModelSession> session);
    ~ApiServer();
    int bind();     // returns the bound port; throws UserError
    void serve();   // blocks until stop()
    void stop();

private:
    void install_routes();
    // Reloads the model when the request's max_k needs other expert slots than loaded.
    void ensure_expert_slots(const Policy & policy);
    const AntPredictor * predictor_for(const Policy & policy) const;

    ServerConfig config_;
    std::unique_ptr<httplib::Server> http_;
    std::timed_mutex model_mutex_;      // held for every model evaluation
    std::unique_ptr<ModelSession> session_;
    int base_k_ = 0;                    // expert slots as loaded at start (with --override-kv)
    std::optional<AntPredictor> predictor_;
    std::mutex info_mutex_;             // guards info_ for GET routes, which never wait
    std::string info_;
};

}  // namespace moelens
