#!/bin/sh
# Rebuild the demo model from nothing: corpus, tokenizer, training (two phases),
# GGUF export, checks, evaluation and fixtures.  About 45 minutes on 2 cores.
# Needs Debian's python3-torch, python3-numpy, libopenblas0-pthread, python3-regex,
# manpages, manpages-de; llama.cpp source with gguf-py in $LLAMA_CPP_SRC or
# /tmp/llama-src; llama-tokenize and llama-perplexity for the checks.
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
T=tools/train
$PY $T/build_corpus.py
$PY $T/train_tokenizer.py --vocab-size 3072
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
