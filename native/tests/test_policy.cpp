// Unit tests of the host-side policy math (native/src/policy.*, policy_json.*, base64.*), each
// against a hand-computed answer. Prints "N passed, M failed" and exits non-zero on failure.
// The in-graph policies (AMG, k cap, disable/boost, skip) are tested on real models by
// test/integration/routing-graph.test.ts.
#include "harness.h"

#include "base64.h"
#include "policy.h"
#include "policy_json.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using namespace moelens;
using moelens_tests::run;

void moelens_tests::policy_tests() {
    run("beta raw membrane accumulates U = βU + z", [] {
        Policy p;
        p.beta = BetaParams{0.5f, std::nullopt, BetaForm::Raw, 1.0f};
        LayerRouterState st;
        st.reset(2);
        float z1[2] = {1.0f, 0.0f};
        apply_logit_policies(p, nullptr, 0, st, z1, 2);
        NEAR(z1[0], 1.0);
        float z2[2] = {0.0f, 2.0f};
        apply_logit_policies(p, nullptr, 0, st, z2, 2);
        NEAR(z2[0], 0.5);
        NEAR(z2[1], 2.0);
    });
    run("beta scale-preserving form, clamp and mix", [] {
        Policy p;
        p.beta = BetaParams{0.5f, 0.6f, BetaForm::ScalePreserving, 0.5f};
        LayerRouterState st;
        st.reset(1);
        float z[1] = {2.0f};  // U = 0.5·0 + 0.5·2 = 1 → clamped to .6; route = .5·2 + .5·.6 = 1.3
        apply_logit_policies(p, nullptr, 0, st, z, 1);
        NEAR(z[0], 1.3);
        NEAR(st.membrane[0], 0.6);
    });
    run("pi weights logits by normalised inverse variance of the prediction error", [] {
        Policy p;
        p.pi = PiParams{0.5f, 0.0f};
        LayerRouterState st;
        st.reset(2);
        float z1[2] = {1.0f, 1.0f};  // no prediction yet: var = 1, 1 → π̃ = 1, 1
        apply_logit_policies(p, nullptr, 0, st, z1, 2);
        NEAR(z1[0], 1.0);
        // Prediction for step 2 = first logits (memory starts at z1). Errors: 0 and 2.
        float z2[2] = {1.0f, 3.0f};
        apply_logit_policies(p, nullptr, 0, st, z2, 2);
        // var = .5·1 + .5·0 = .5 ; .5·1 + .5·4 = 2.5 → π = 2, .4 → mean 1.2 → π̃ = 5/3, 1/3
        NEAR(st.precision[0], 2.0 / 1.2);
        NEAR(st.precision[1], 0.4 / 1.2);
        NEAR(z2[0], 1.0 * 2.0 / 1.2);
        NEAR(z2[1], 3.0 * 0.4 / 1.2);
    });
    run("ant adds gamma times the predictor's forecast", [] {
        Policy p;
        p.ant = AntParams{2.0f};
        AntLayer a;
        // E = 1: ẑ = W·[z; U; 1] with W = [0.5, 1, 0.25]; β = 0 → U = z.
        a.W = {0.5f, 1.0f, 0.25f};
        LayerRouterState st;
        st.reset(1);
        float z[1] = {2.0f};  // ẑ = 1 + 2 + .25 = 3.25 → route = 2 + 2·3.25 = 8.5
        apply_logit_policies(p, &a, 0.0f, st, z, 1);
        NEAR(z[0], 8.5);
    });
    run("entropy and top_n", [] {
        const float u[4] = {0.25f, 0.25f, 0.25f, 0.25f};
        NEAR(entropy_nats(u, 4), std::log(4.0));
        const float p[4] = {0.1f, 0.6f, 0.1f, 0.2f};
        int32_t ids[2];
        float vals[2];
        top_n(p, 4, 2, ids, vals);
        CHECK(ids[0] == 1 && ids[1] == 3);
        NEAR(vals[1], 0.2);
    });
    run("base64 round trip and rejection", [] {
        const std::vector<float> v = {1.5f, -2.0f, NAN};
        const std::string s = base64_of(v);
        std::vector<unsigned char> back;
        CHECK(base64_decode(s, back));
        CHECK(back.size() == 12);
        CHECK(base64_encode("ab", 2) == "YWI=");
        CHECK(!base64_decode("YW!=", back));
        CHECK(!base64_decode("YWI", back));
    });
    run("policy json validates ranges and round-trips", [] {
        const auto j = nlohmann::json::parse(
            R"({"amg":{"threshold":0.5,"min_k":2,"mode":"full"},"beta":{"beta":0.9,"form":"scale_preserving"},"disable":[[1,3]],"boost":[[0,2,1.5]]})");
        const Policy p = policy_from_json(j, 8, 4);
        CHECK(p.amg && p.amg->mode == AmgMode::Full && p.amg->min_k == 2);
        CHECK(p.beta && p.beta->form == BetaForm::ScalePreserving);
        CHECK(p.biases.size() == 2);
        CHECK(policy_from_json(policy_to_json(p), 8, 4).biases.size() == 2);
        CHECK(p.skip && policy_to_json(p).count("skip") == 0);
        const Policy noskip = policy_from_json(nlohmann::json::parse(R"({"max_k":2,"skip":false})"), 8, 4);
        CHECK(!noskip.skip && policy_from_json(policy_to_json(noskip), 8, 4).skip == false);
        auto rejects = [](const char * text) {
            try {
                policy_from_json(nlohmann::json::parse(text), 8, 4);
            } catch (const BadRequest &) { return true; }
            return false;
        };
        CHECK(rejects(R"({"amg":{"threshold":0}})"));
        CHECK(rejects(R"({"amg":{"threshold":1.5}})"));
        CHECK(rejects(R"({"amg":{"threshold":"x"}})"));
        CHECK(rejects(R"({"beta":{"beta":1.0}})"));
        CHECK(rejects(R"({"disable":[[9,0]]})"));
        CHECK(rejects(R"({"disable":[[0,8]]})"));
        CHECK(rejects(R"({"max_k":0})"));
        CHECK(rejects(R"({"nonsense":1})"));
        CHECK(rejects(R"({"skip":1})"));
        CHECK(!policy_from_json(nlohmann::json(), 8, 4).any(2));
    });
}
