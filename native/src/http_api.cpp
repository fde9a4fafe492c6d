#include "http_api.h"

#include "evaluations.h"
#include "policy_json.h"
#include "predictor.h"

#include <cpp-httplib/httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

namespace moelens {

using nlohmann::json;

bool is_loopback_host(const std::string & host) {
    return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool is_valid_utf8(const std::string & s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const unsigned char c = s[i];
        int len;
        unsigned cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (int k = 1; k < len; ++k) {
            const unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool constant_time_equals(const std::string & a, const std::string & b) {
    // Time depends only on the expected token's length, never on where the strings differ.
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

namespace {

struct HttpError {
    int status;
    std::string code, message;
};

void send_error(httplib::Response & res, int status, const std::string & code, const std::string & message) {
    res.status = status;
    res.set_content(json{{"error", {{"code", code}, {"message", message}}}}.dump(), "application/json");
}

json parse_body(const httplib::Request & req) {
    json j;
    try {
        j = json::parse(req.body);
    } catch (const std::exception &) {
        throw BadRequest("the request body is not valid JSON");
    }
    if (!j.is_object()) throw BadRequest("the request body must be a JSON object");
    return j;
}

std::string required_text(const json & body, const char * key) {
    if (!body.contains(key)) throw BadRequest(std::string("\"") + key + "\" is required");
    if (!body[key].is_string()) throw BadRequest(std::string("\"") + key + "\" must be a string");
    std::string text = body[key].get<std::string>();
    if (text.empty()) throw BadRequest(std::string("\"") + key + "\" is empty: there is nothing to evaluate");
    if (!is_valid_utf8(text)) throw BadRequest(std::string("\"") + key + "\" is not valid UTF-8");
    return text;
}

int int_field(const json & body, const char * key, int lo, int hi, int dflt) {
    if (!body.contains(key) || body[key].is_null()) return dflt;
    if (!body[key].is_number_integer()) throw BadRequest(std::string("\"") + key + "\" must be an integer");
    const long long v = body[key].get<long long>();
    if (v < lo || v > hi) throw BadRequest(std::string("\"") + key + "\" must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int(v);
}

double num_field(const json & body, const char * key, double lo, double hi, double dflt) {
    if (!body.contains(key) || body[key].is_null()) return dflt;
    if (!body[key].is_number()) throw BadRequest(std::string("\"") + key + "\" must be a number");
    const double v = body[key].get<double>();
    if (!(v >= lo && v <= hi)) throw BadRequest(std::string("\"") + key + "\" must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
}

// An abort check for llama_decode that asks the socket at most every 50 ms.
std::function<bool()> throttled(std::function<bool()> gone) {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    auto result = std::make_shared<bool>(false);
    return [gone, last, result] {
        const auto now = std::chrono::steady_clock::now();
        if (!*result && now - *last > std::chrono::milliseconds(50)) {
            *last = now;
            *result = gone();
        }
        return *result;
    };
}

}  // namespace

ApiServer::ApiServer(ServerConfig config, std::unique_ptr<ModelSession> session)
    : config_(std::move(config)), http_(std::make_unique<httplib::Server>()), session_(std::move(session)) {
    base_k_ = session_->layout().k;
    info_ = session_->info().dump();
    if (!config_.predictor_path.empty()) predictor_ = load_predictor(config_.predictor_path, *session_);
    install_routes();
}

ApiServer::~ApiServer() = default;

int ApiServer::bind() {
    if (!is_loopback_host(config_.host) && !config_.allow_remote)
        throw UserError("refusing to listen on non-loopback address " + config_.host +
                        ": MoE Lens serves local clients only; pass --allow-remote to do it anyway");
    const int port = config_.port == 0 ? http_->bind_to_any_port(config_.host) : (http_->bind_to_port(config_.host, config_.port) ? config_.port : -1);
    if (port <= 0) throw UserError("cannot listen on " + config_.host + ":" + std::to_string(config_.port));
    return port;
}

void ApiServer::serve() { http_->listen_after_bind(); }
void ApiServer::stop() { http_->stop(); }

void ApiServer::ensure_expert_slots(const Policy & policy) {
    const int want = policy.max_k && *policy.max_k > base_k_ ? *policy.max_k : base_k_;
    if (want == session_->layout().k) return;
    LoadOptions opts = session_->options();
    const std::string key = session_->architecture + ".expert_used_count";
    std::vector<std::string> kept;
    for (const auto & o : opts.override_kv)
        if (o.rfind(key + "=", 0) != 0) kept.push_back(o);
    kept.push_back(key + "=int:" + std::to_string(want));
    opts.override_kv = kept;
    session_.reset();  // free the old model first: two large models may not fit together
    try {
        session_ = ModelSession::load(opts);
    } catch (...) {
        opts.override_kv.pop_back();
        session_ = ModelSession::load(opts);
        throw;
    }
    if (session_->layout().k != want)
        throw UserError("the model ignored " + key + "=" + std::to_string(want) + " (it reports k=" +
                        std::to_string(session_->layout().k) + ")");
    std::lock_guard<std::mutex> lock(info_mutex_);
    info_ = session_->info().dump();
}

const AntPredictor * ApiServer::predictor_for(const Policy & policy) const {
    if (policy.ant && !predictor_)
        throw HttpError{409, "no_predictor", "the Ant policy needs a fitted predictor and none is loaded: run calibration first (moe-lens calibrate, or \"MoE Lens: Calibrate Ant on Text…\")"};
    return predictor_ ? &*predictor_ : nullptr;
}

void ApiServer::install_routes() {
    httplib::Server & http = *http_;
    http.set_payload_max_length(config_.max_body);

    http.set_pre_routing_handler([this](const httplib::Request & req, httplib::Response & res) {
        const std::string header = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        const std::string given = header.rfind(prefix, 0) == 0 ? header.substr(prefix.size()) : std::string();
        if (!constant_time_equals(given, config_.token)) {
            send_error(res, 401, "unauthorized", "missing or wrong bearer token");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });

    http.set_error_handler([](const httplib::Request &, httplib::Response & res) {
        if (!res.body.empty()) return;
        if (res.status == 404) send_error(res, 404, "not_found", "no such route");
        else if (res.status == 413) send_error(res, 413, "too_large", "the request body is larger than the server's --max-body");
        else send_error(res, res.status, "http_error", "HTTP error " + std::to_string(res.status));
    });

    http.set_exception_handler([](const httplib::Request &, httplib::Response & res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const BadRequest & e) {
            send_error(res, 400, "bad_request", e.what());
        } catch (const UserError & e) {
            send_error(res, 400, "bad_request", e.what());
        } catch (const HttpError & e) {
            send_error(res, e.status, e.code, e.message);
        } catch (const std::exception & e) {
            send_error(res, 500, "internal", e.what());
        } catch (...) {
            send_error(res, 500, "internal", "unknown error");
        }
    });

    http.Get("/health", [this](const httplib::Request &, httplib::Response & res) {
        const bool busy = !model_mutex_.try_lock();
        if (!busy) model_mutex_.unlock();
        res.set_content(json{{"ok", true}, {"busy", busy}}.dump(), "application/json");
    });

    http.Get("/v1/model", [this](const httplib::Request &, httplib::Response & res) {
        std::lock_guard<std::mutex> lock(info_mutex_);
        json info = json::parse(info_);
        info["predictor_loaded"] = predictor_.has_value();
        res.set_content(info.dump(), "application/json");
    });

    // Takes the model for one request, or answers 429 after 2 s.
    auto acquire = [this]() {
        auto lock = std::make_shared<std::unique_lock<std::timed_mutex>>(model_mutex_, std::defer_lock);
        if (!lock->try_lock_for(std::chrono::seconds(2))) throw HttpError{429, "busy", "the model is busy with another request; retry shortly"};
        return lock;
    };

    http.Post("/v1/tokenize", [this, acquire](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        const std::string text = required_text(body, "text");
        const bool add_bos = body.value("add_bos", bool(llama_vocab_get_add_bos(session_->vocab)));
        auto lock = acquire();
        const TokenizedText t = session_->tokenize(text, add_bos);
        json spans = json::array();
        for (size_t i = 0; i < t.tokens.size(); ++i) spans.push_back({t.byte_start[i], t.byte_end[i]});
        res.set_content(json{{"tokens", t.tokens}, {"pieces", t.pieces}, {"byte_spans", spans}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    });

    // Runs `work` inside a chunked NDJSON response holding the model lock until it ends.
    auto stream = [this](httplib::Response & res, std::shared_ptr<std::unique_lock<std::timed_mutex>> lock,
                         std::function<void(const Emit &)> work) {
        res.set_header("Cache-Control", "no-store");
        res.set_chunked_content_provider(
            "application/x-ndjson",
            [this, work](size_t, httplib::DataSink & sink) {
                session_->should_abort = throttled([&sink] { return !sink.is_writable(); });
                Emit emit = [&sink](const json & record) {
                    const std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
                    return sink.is_writable() && sink.write(line.data(), line.size());
                };
                try {
                    work(emit);
                } catch (const HttpError & e) {
                    emit({{"type", "error"}, {"code", e.code}, {"message", e.message}});
                } catch (const std::exception & e) {
                    if (std::string(e.what()) != "cancelled") emit({{"type", "error"}, {"code", "failed"}, {"message", e.what()}});
                }
                session_->should_abort = nullptr;
                sink.done();
                return true;
            },
            [lock](bool) mutable { lock.reset(); });
    };

    http.Post("/v1/trace", [this, acquire, stream](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        auto lock = acquire();
        const Policy policy = policy_from_json(body.value("policy", json()), session_->layout().n_expert, llama_model_n_layer(session_->model));
        ensure_expert_slots(policy);
        const AntPredictor * ant = predictor_for(policy);
        TraceRequest tr;
        tr.policy = policy;
        tr.top_n = int_field(body, "top_n", 0, session_->layout().n_expert, 0);
        if (body.contains("expert_norms")) {
            if (!body["expert_norms"].is_boolean()) throw BadRequest("\"expert_norms\" must be true or false");
            tr.expert_norms = body["expert_norms"].get<bool>();
        }
        if (body.contains("tokens")) {
            if (!body["tokens"].is_array() || body["tokens"].empty()) throw BadRequest("\"tokens\" must be a non-empty array of token ids");
            std::vector<llama_token> ids;
            const int n_vocab = llama_vocab_n_tokens(session_->vocab);
            for (const json & t : body["tokens"]) {
                if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= n_vocab)
                    throw BadRequest("\"tokens\" must hold integers in [0, " + std::to_string(n_vocab) + ")");
                ids.push_back(t.get<int>());
            }
            tr.text = session_->describe_tokens(ids);
        } else {
            const std::string text = required_text(body, "text");
            const bool add_bos = body.value("add_bos", bool(llama_vocab_get_add_bos(session_->vocab)));
            tr.text = session_->tokenize(text, add_bos);
            if (tr.text.tokens.empty()) throw BadRequest("the text produced no tokens");
        }
        stream(res, lock, [this, tr, ant](const Emit & emit) { run_trace(*session_, tr, ant, emit); });
    });

    http.Post("/v1/generate", [this, acquire, stream](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        auto lock = acquire();
        GenerateRequest g;
        g.policy = policy_from_json(body.value("policy", json()), session_->layout().n_expert, llama_model_n_layer(session_->model));
        ensure_expert_slots(g.policy);
        const AntPredictor * ant = predictor_for(g.policy);
        g.prompt = session_->tokenize(required_text(body, "prompt"), true);
        g.n_predict = int_field(body, "n_predict", 0, 4096, 64);
        g.temperature = float(num_field(body, "temperature", 0.0, 10.0, 0.8));
        g.top_k = int_field(body, "top_k", 0, 1 << 20, 40);
        g.top_p = float(num_field(body, "top_p", 0.0, 1.0, 0.95));
        g.seed = uint32_t(int_field(body, "seed", 0, 2147483647, 42));
        g.top_n = int_field(body, "top_n", 0, session_->layout().n_expert, 0);
        stream(res, lock, [this, g, ant](const Emit & emit) { run_generate(*session_, g, ant, emit); });
    });

    http.Post("/v1/perplexity", [this, acquire](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        const std::string text = required_text(body, "text");
        auto lock = acquire();
        const Policy policy = policy_from_json(body.value("policy", json()), session_->layout().n_expert, llama_model_n_layer(session_->model));
        ensure_expert_slots(policy);
        const AntPredictor * ant = predictor_for(policy);
        const int n_ctx = int_field(body, "n_ctx", 8, 1 << 20, 512);
        const int n_batch = int_field(body, "n_batch", 1, 1 << 20, 2048);
        session_->should_abort = throttled([&req] { return req.is_connection_closed(); });
        json result;
        try {
            result = run_perplexity(*session_, session_->tokenize(text, true).tokens, n_ctx, n_batch, policy, ant);
        } catch (...) {
            session_->should_abort = nullptr;
            throw;
        }
        session_->should_abort = nullptr;
        res.set_content(result.dump(), "application/json");
    });

    http.Post("/v1/speed", [this, acquire](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        const std::string text = required_text(body, "text");
        auto lock = acquire();
        SpeedRequest sr;
        sr.policy = policy_from_json(body.value("policy", json()), session_->layout().n_expert, llama_model_n_layer(session_->model));
        ensure_expert_slots(sr.policy);
        const AntPredictor * ant = predictor_for(sr.policy);
        sr.tokens = session_->tokenize(text, true).tokens;
        sr.n_prefill = int_field(body, "n_prefill", 0, 1 << 24, 0);
        sr.n_prompt = int_field(body, "n_prompt", 1, 1 << 20, 32);
        sr.n_decode = int_field(body, "n_decode", 1, 4096, 64);
        session_->should_abort = throttled([&req] { return req.is_connection_closed(); });
        json result;
        try {
            result = run_speed(*session_, sr, ant);
        } catch (...) {
            session_->should_abort = nullptr;
            throw;
        }
        session_->should_abort = nullptr;
        res.set_content(result.dump(), "application/json");
    });

    http.Post("/v1/calibrate", [this, acquire](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        const std::string text = required_text(body, "text");
        auto lock = acquire();
        ensure_expert_slots(Policy{});
        res.set_content(run_calibrate(*session_, session_->tokenize(text, true).tokens).dump(), "application/json");
    });

    http.Post("/v1/predictor", [this, acquire](const httplib::Request & req, httplib::Response & res) {
        const json body = parse_body(req);
        if (!body.contains("path")) throw BadRequest("\"path\" is required (a file path, or null to unload)");
        auto lock = acquire();
        if (body["path"].is_null()) {
            predictor_.reset();
        } else {
            if (!body["path"].is_string()) throw BadRequest("\"path\" must be a string or null");
            predictor_ = load_predictor(body["path"].get<std::string>(), *session_);
        }
        res.set_content(json{{"predictor_loaded", predictor_.has_value()}}.dump(), "application/json");
    });
}

}  // namespace moelens
