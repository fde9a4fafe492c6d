#!/bin/sh
# Rebuild the demo model from nothing: corpus, tokenizer, training (two phases),
# GGUF export, checks, evaluation and fixtures; then the fine-grained model (64 experts,
# k = 8) with the same tokenizer and corpus, and its router packs.  About 3 hours on 2 cores.
# `rebuild.sh fine` builds only the fine-grained model (corpus and tokenizer included) and its
# packs; `rebuild.sh packs` only the packs of the fine-grained model as it is.
# Needs Debian's python3-torch, python3-numpy, libopenblas0-pthread, python3-regex,
# manpages, manpages-de; llama.cpp source with gguf-py in $LLAMA_CPP_SRC or
# /tmp/llama-src; llama-tokenize and llama-perplexity for the checks.
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
T=tools/train
FINE=media/models/demo-moe-fine.gguf
if [ "${1:-}" != packs ]; then
$PY $T/build_corpus.py
$PY $T/train_tokenizer.py --vocab-size 3072
fi
if [ "${1:-}" = "" ]; then
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
# fine-grained demo model"); the same two phases, then both again from where they ended
# (a second 256-token phase at a lower peak LR and a second long-context phase).
if [ "${1:-}" != packs ]; then
$PY $T/train.py --minutes 32 --n-layer 6 --n-expert 64 --n-expert-used 8 --d-expert 64 \
    --out $T/out/fine-256.pt
$PY $T/train.py --init $T/out/fine-256.pt --ctx 1024 --batch 4 --lr 1e-3 --warmup 20 \
    --minutes 7 --out $T/out/fine.pt
$PY $T/train.py --init $T/out/fine.pt --ctx 256 --batch 16 --lr 2e-3 --warmup 30 \
    --minutes 30 --seed 1 --out $T/out/fine2-256.pt
$PY $T/train.py --init $T/out/fine2-256.pt --ctx 1024 --batch 4 --lr 1e-3 --warmup 20 \
    --minutes 7 --seed 1 --out $T/out/fine2.pt
$PY $T/export_gguf.py --checkpoint $T/out/fine2.pt --out $FINE \
    --name "MoE Lens fine-grained demo MoE"
$PY $T/check_tokenizer.py --gguf $FINE
$PY $T/check_parity.py --gguf $FINE
$PY $T/evaluate.py --gguf $FINE --json $T/out/eval-fine.json
fi
# Router packs of the fine-grained model (README.md, "Router packs"): router-only fine-tunes,
# all on the same batches (same seed and step count). `entropy`: the AMG text's entropy-
# regularised router; the eight others: the {beta, Pi, Ant} ablation of the Affinity text.
PACKS=media/models/packs/demo-moe-fine
STEPS=${PACK_STEPS:-80}
$PY $T/train_pack.py --base $FINE --name entropy --entropy-coef 0.2 --steps $STEPS --lr 5e-3 --threads 1 \
    --batch 8 --out $PACKS/entropy.gguf
for m in "" beta pi ant beta+pi beta+ant pi+ant beta+pi+ant; do
  $PY $T/train_pack.py --base $FINE --name "${m:-standard}" --mechanisms "$m" --steps $STEPS --lr 5e-3 --threads 1 \
      --batch 8 --out "$PACKS/${m:-standard}.gguf"
done
for p in $PACKS/*.gguf; do $PY $T/check_parity.py --gguf $FINE --router-pack "$p"; done
$PY $T/pack_reference.py --gguf $FINE --packs $PACKS --out test/fixtures/parity/demo-moe-fine.packs.json.gz \
    test/fixtures/transitions/01.txt test/fixtures/transitions/05.txt test/fixtures/transitions/09.txt
