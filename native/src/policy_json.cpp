#include "policy_json.h"

#include <cmath>

namespace moelens {

using nlohmann::json;

static double number(const json & obj, const char * key, const std::string & where, double lo, double hi, bool lo_open = false) {
    if (!obj.contains(key)) throw BadRequest(where + "." + key + " is required");
    const json & v = obj.at(key);
    if (!v.is_number()) throw BadRequest(where + "." + key + " must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
        throw BadRequest(where + "." + key + " must be in " + (lo_open ? "(" : "[") + std::to_string(lo) + ", " + std::to_string(hi) +
                         "], got " + v.dump());
    return x;
}

static double number_or(const json & obj, const char * key, const std::string & where, double lo, double hi, double dflt) {
    return obj.contains(key) && !obj.at(key).is_null() ? number(obj, key, where, lo, hi) : dflt;
}

static int integer(const json & v, const std::string & what, int lo, int hi) {
    if (!v.is_number_integer()) throw BadRequest(what + " must be an integer");
    const long long x = v.get<long long>();
    if (x < lo || x > hi) throw BadRequest(what + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump());
    return int(x);
}

static void only_keys(const json & obj, const std::string & where, std::initializer_list<const char *> keys) {
    if (!obj.is_object()) throw BadRequest(where + " must be an object");
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        bool known = false;
        for (const char * k : keys) known |= it.key() == k;
        if (!known) throw BadRequest("unknown field " + where + "." + it.key());
    }
}

Policy policy_from_json(const json & j, int n_expert, int n_layer) {
    Policy p;
    if (j.is_null()) return p;
    only_keys(j, "policy", {"amg", "max_k", "beta", "pi", "ant", "disable", "boost", "skip"});
    if (j.contains("amg") && !j["amg"].is_null()) {
        const json & a = j["amg"];
        only_keys(a, "policy.amg", {"threshold", "min_k", "mode"});
        AmgParams amg;
        amg.threshold = float(number(a, "threshold", "policy.amg", 0.0, 1.0, true));
        amg.min_k = a.contains("min_k") ? integer(a["min_k"], "policy.amg.min_k", 1, n_expert) : 1;
        if (a.contains("mode")) {
            if (a["mode"] == "selected")
                amg.mode = AmgMode::Selected;
            else if (a["mode"] == "full")
                amg.mode = AmgMode::Full;
            else
                throw BadRequest("policy.amg.mode must be \"selected\" or \"full\"");
        }
        p.amg = amg;
    }
    if (j.contains("max_k") && !j["max_k"].is_null()) p.max_k = integer(j["max_k"], "policy.max_k", 1, n_expert);
    if (j.contains("skip") && !j["skip"].is_null()) {
        if (!j["skip"].is_boolean()) throw BadRequest("policy.skip must be true or false");
        p.skip = j["skip"].get<bool>();
    }
    if (j.contains("beta") && !j["beta"].is_null()) {
        const json & b = j["beta"];
        only_keys(b, "policy.beta", {"beta", "theta", "form", "mix"});
        BetaParams beta;
        beta.beta = float(number(b, "beta", "policy.beta", 0.0, 0.9999));
        if (b.contains("theta") && !b["theta"].is_null()) beta.theta = float(number(b, "theta", "policy.beta", -1e6, 1e6));
        if (b.contains("form")) {
            if (b["form"] == "raw")
                beta.form = BetaForm::Raw;
            else if (b["form"] == "scale_preserving")
                beta.form = BetaForm::ScalePreserving;
            else
                throw BadRequest("policy.beta.form must be \"raw\" or \"scale_preserving\"");
        }
        beta.mix = float(number_or(b, "mix", "policy.beta", 0.0, 1.0, 1.0));
        p.beta = beta;
    }
    if (j.contains("pi") && !j["pi"].is_null()) {
        const json & q = j["pi"];
        only_keys(q, "policy.pi", {"momentum", "eps"});
        PiParams pi;
        pi.momentum = float(number_or(q, "momentum", "policy.pi", 0.0, 0.9999, 0.95));
        pi.eps = float(number_or(q, "eps", "policy.pi", 1e-12, 1.0, 1e-6));
        p.pi = pi;
    }
    if (j.contains("ant") && !j["ant"].is_null()) {
        const json & a = j["ant"];
        only_keys(a, "policy.ant", {"gamma"});
        p.ant = AntParams{float(number(a, "gamma", "policy.ant", 0.0, 10.0))};
    }
    if (j.contains("boost") && !j["boost"].is_null()) {
        if (!j["boost"].is_array()) throw BadRequest("policy.boost must be an array of [layer, expert, bias]");
        for (const json & e : j["boost"]) {
            if (!e.is_array() || e.size() != 3) throw BadRequest("policy.boost entries must be [layer, expert, bias]");
            const json wrap = {{"bias", e[2]}};
            p.biases.push_back({integer(e[0], "policy.boost layer", 0, n_layer - 1), integer(e[1], "policy.boost expert", 0, n_expert - 1),
                                float(number(wrap, "bias", "policy.boost", -100.0, 100.0))});
        }
    }
    if (j.contains("disable") && !j["disable"].is_null()) {
        if (!j["disable"].is_array()) throw BadRequest("policy.disable must be an array of [layer, expert]");
        for (const json & e : j["disable"]) {
            if (!e.is_array() || e.size() != 2) throw BadRequest("policy.disable entries must be [layer, expert]");
            p.biases.push_back({integer(e[0], "policy.disable layer", 0, n_layer - 1),
                                integer(e[1], "policy.disable expert", 0, n_expert - 1), -INFINITY});
        }
    }
    return p;
}

json policy_to_json(const Policy & p) {
    json j = json::object();
    if (p.amg)
        j["amg"] = {{"threshold", p.amg->threshold}, {"min_k", p.amg->min_k}, {"mode", p.amg->mode == AmgMode::Full ? "full" : "selected"}};
    if (p.max_k) j["max_k"] = *p.max_k;
    if (!p.skip) j["skip"] = false;
    if (p.beta) {
        j["beta"] = {{"beta", p.beta->beta}, {"form", p.beta->form == BetaForm::Raw ? "raw" : "scale_preserving"}, {"mix", p.beta->mix}};
        j["beta"]["theta"] = p.beta->theta ? json(*p.beta->theta) : json(nullptr);
    }
    if (p.pi) j["pi"] = {{"momentum", p.pi->momentum}, {"eps", p.pi->eps}};
    if (p.ant) j["ant"] = {{"gamma", p.ant->gamma}};
    for (const ExpertBias & b : p.biases) {
        if (std::isinf(b.bias) && b.bias < 0)
            j["disable"].push_back({b.layer, b.expert});
        else
            j["boost"].push_back({b.layer, b.expert, b.bias});
    }
    return j;
}

}  // namespace moelens
