#!/usr/bin/env python3
"""Compare two per-token traces (reference_trace.py output vs a llama.cpp
trace with the same fields).  Token ids must be equal; reports the share of
(token, layer) pairs with the same expert set and the same ordered top-k, and
the largest/mean absolute differences of log p(next token) and router probs
(the largest also over only the tokens whose experts agree in every layer).

  /usr/bin/python3 tools/train/compare_traces.py REF.json OTHER.json
"""
import json
import sys


def compare(a, b):
    ta, tb = a["tokens"], b["tokens"]
    if [t["id"] for t in ta] != [t["id"] for t in tb]:
        raise SystemExit(f"token ids differ (lengths {len(ta)} vs {len(tb)})")
    pairs = same_set = same_order = 0
    dlp, dp, dlp_clean = [], [], []
    for x, y in zip(ta, tb):
        clean = all(set(ea) == set(eb) for ea, eb in zip(x["experts"], y["experts"]))
        if x["logprob_next"] is not None:
            dlp.append(abs(x["logprob_next"] - y["logprob_next"]))
            if clean:
                dlp_clean.append(dlp[-1])
        for l, (ea, eb) in enumerate(zip(x["experts"], y["experts"])):
            pairs += 1
            same_set += set(ea) == set(eb)
            same_order += list(ea) == list(eb)
            dp.append(max(abs(p - q) for p, q in zip(x["probs"][l], y["probs"][l])))
    return {"tokens": len(ta), "pairs": pairs, "expert_set_match": same_set / pairs,
            "expert_order_match": same_order / pairs,
            "logprob_abs_diff_max": max(dlp), "logprob_abs_diff_mean": sum(dlp) / len(dlp),
            # the same, only over tokens whose experts match in every layer: a
            # flipped near-tie changes that token's output by design
            "logprob_abs_diff_max_same_experts": max(dlp_clean, default=0.0),
            "logprob_abs_diff_mean_same_experts": sum(dlp_clean) / max(1, len(dlp_clean)),
            "tokens_same_experts": len(dlp_clean),
            "scored_tokens": len(dlp),
            "router_prob_abs_diff_max": max(dp)}


if __name__ == "__main__":
    a, b = (json.load(open(p, encoding="utf-8")) for p in sys.argv[1:3])
    print(json.dumps(compare(a, b), indent=1))
