#!/bin/sh
# Rebuild the demo model from nothing: corpus, tokenizer, training (two phases),
# GGUF export, checks, evaluation and fixtures; then the fine-grained model (64 experts,
# k = 8) with the same tokenizer and corpus.  About 90 minutes on 2 cores.
# `rebuild.sh fine` builds only the fine-grained model (corpus and tokenizer included).
# Needs Debian's python3-torch, python3-numpy, libopenblas0-pthread, python3-regex,
# manpages, manpages-de; llama.cpp source with gguf-py in $LLAMA_CPP_SRC or
# /tmp/llama-src; llama-tokenize and llama-perplexity for the checks.
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
T=tools/train
$PY $T/build_corpus.py
$PY $T/train_tokenizer.py --vocab-size 3072
if [ "${1:-}" != fine ]; then
# phase 1: 256-token windows
$PY $T/train.py --minutes 30 --out $T/out/ckpt-256.pt
# phase 2: extend the context to 1024 tokens (fewer, longer windows, lower LR)
$PY $T/train.py --init $T/out/ckpt-256.pt --ctx 1024 --batch 4 --lr 1e-3 --warmup 20 \
    --minutes 7 --out $T/out/ckpt.pt
$PY $T/export_gguf.py --checkpoint $T/out/ckpt.pt --out media/models/demo-moe.gguf
$PY $T/build_fixtures.py
$PY $T/reference_trace.py --text test/fixtures/demo-sample.md \
    --out test/fixtures/parity/demo-sample.trace.json
$PY $T/check_tokenizer.py
$PY $T/evaluate.py --json $T/out/eval.json
fi
# The fine-grained demo model: 6 layers, 64 experts of width 64, k = 8 (README.md, "The
# fine-grained demo model"); the same two phases.
$PY $T/train.py --minutes 32 --n-layer 6 --n-expert 64 --n-expert-used 8 --d-expert 64 \
    --out $T/out/fine-256.pt
$PY $T/train.py --init $T/out/fine-256.pt --ctx 1024 --batch 4 --lr 1e-3 --warmup 20 \
    --minutes 7 --out $T/out/fine.pt
$PY $T/export_gguf.py --checkpoint $T/out/fine.pt --out media/models/demo-moe-fine.gguf \
    --name "MoE Lens fine-grained demo MoE"
$PY $T/check_tokenizer.py --gguf media/models/demo-moe-fine.gguf
$PY $T/check_parity.py --gguf media/models/demo-moe-fine.gguf
$PY $T/evaluate.py --gguf media/models/demo-moe-fine.gguf --json $T/out/eval-fine.json
