#include "predictor.h"

#include "base64.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace moelens {

using nlohmann::json;

AntPredictor load_predictor(const std::string & path, ModelSession & s) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw UserError("cannot read the predictor file " + path + ": it does not exist or is not a regular file");
    std::ifstream f(path);
    if (!f) throw UserError("cannot read the predictor file " + path);
    const json j = json::parse(f, nullptr, false);
    if (j.is_discarded()) throw UserError("the predictor file " + path + " is not valid JSON");
    // Every field is checked for its type before use: a wrong type is the file's fault (400).
    auto field = [&](const char * key) -> const json & {
        static const json null_value;
        const auto it = j.find(key);
        return it == j.end() ? null_value : *it;
    };
    if (!j.is_object() || field("format") != "moe-lens-ant-predictor") throw UserError(path + " is not a MoE Lens Ant predictor file");
    if (!field("version").is_number_integer() || field("version") != 1)
        throw UserError(path + " has predictor format version " + field("version").dump() + "; this server reads version 1");
    const MoeLayout & L = s.layout();
    const std::string want = s.model_sha256();
    const std::string have = field("model_sha256").is_string() ? field("model_sha256").get<std::string>() : std::string("?");
    if (have != want)
        throw UserError("the predictor " + path + " was fitted for another model file (sha256 " + have.substr(0, 12) + "…, loaded model " +
                        want.substr(0, 12) + "…); calibrate again on this model");
    if (!field("n_expert").is_number_integer() || field("n_expert") != L.n_expert || field("moe_layers") != json(L.moe_layers))
        throw UserError("the predictor " + path + " does not match the model's experts or MoE layers");
    AntPredictor p;
    p.n_expert = L.n_expert;
    p.beta = 0.9f;
    if (!field("beta").is_null()) {
        if (!field("beta").is_number() || !(field("beta").get<double>() >= 0 && field("beta").get<double>() < 1))
            throw UserError("the predictor " + path + " has a beta outside [0, 1)");
        p.beta = field("beta").get<float>();
    }
    const size_t cols = size_t(2 * L.n_expert + 1);
    const json & layers = field("layers");
    if (!layers.is_array() || layers.size() != L.moe_layers.size())
        throw UserError("the predictor " + path + " must have one entry in \"layers\" per MoE layer (" +
                        std::to_string(L.moe_layers.size()) + ")");
    for (size_t m = 0; m < layers.size(); ++m) {
        const json & entry = layers[m];
        const std::string where = "the predictor " + path + " layer entry " + std::to_string(m);
        if (!entry.is_object() || !entry.contains("W") || !entry["W"].is_string()) throw UserError(where + " needs a base64 string \"W\"");
        std::vector<unsigned char> bytes;
        if (!base64_decode(entry["W"].get<std::string>(), bytes) || bytes.size() != L.n_expert * cols * sizeof(float))
            throw UserError(where + " has a malformed weight matrix");
        AntLayer a;
        a.layer = entry.contains("layer") && entry["layer"].is_number_integer() ? entry["layer"].get<int>() : -1;
        a.W.resize(L.n_expert * cols);
        std::memcpy(a.W.data(), bytes.data(), bytes.size());
        for (float w : a.W)
            if (!std::isfinite(w)) throw UserError(where + " has a weight that is not a finite number");
        p.layers.push_back(std::move(a));
    }
    return p;
}

}  // namespace moelens
