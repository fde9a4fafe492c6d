"""Byte-level BPE tokenizer, compatible with llama.cpp's "gpt2" tokenizer model.

The tokenizer is exported into the GGUF as
  tokenizer.ggml.model  = "gpt2"
  tokenizer.ggml.pre    = "qwen2"
so llama.cpp splits text with its Qwen2 pre-tokenizer (src/llama-vocab.cpp,
LLAMA_VOCAB_PRE_TYPE_QWEN2, implemented by unicode_regex_split_custom_qwen2 in
src/unicode.cpp) and then applies our merges by rank to the GPT-2
byte-to-unicode encoded pieces.  PRETOKENIZE_RE below is the regex llama.cpp
lists for that pre-tokenizer (its case-insensitive contractions spelled out as
character classes, exactly as llama.cpp has them).  Single digits are split
into separate pieces, which helps the arithmetic domain.

Token ids: 0..255 are the single bytes (id == byte value), then one id per
merge in merge order, then the special tokens.
"""
import heapq
import json
from collections import Counter, defaultdict

import regex

PRE_TYPE = "qwen2"
PRETOKENIZE_RE = regex.compile(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

BOS_TEXT = "<|endoftext|>"
SPECIAL_TOKENS = [BOS_TEXT]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENC = bytes_to_unicode()


def pretokenize(text):
    return PRETOKENIZE_RE.findall(text)


def train_bpe(texts, vocab_size, min_count=2, log=None):
    """Learn merges from an iterable of strings.

    Returns a list of merges, each a pair of token ids (left, right); the merged
    token gets id 256 + merge index.  Ties between equally frequent pairs are
    broken by the smaller (left, right) ids so training is deterministic.
    """
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    word_freq = Counter()
    for t in texts:
        word_freq.update(pretokenize(t))
    words = [list(w.encode("utf-8")) for w in word_freq]
    freqs = list(word_freq.values())

    pair_count = defaultdict(int)
    pair_where = defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += f
            pair_where[(a, b)].add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc:     # stale heap entry
            continue
        if -negc < min_count:
            break
        new_id = 256 + len(merges)
        merges.append(pair)
        a, b = pair
        changed = set()
        for wi in pair_where.pop(pair, ()):
            w, f = words[wi], freqs[wi]
            # remove this word's old pairs
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            # merge left to right, non-overlapping
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                pair_where[p].add(wi)
                changed.add(p)
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
        if log and len(merges) % 500 == 0:
            log(f"bpe: {len(merges)} merges, last count {-negc}")
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.tok_bytes = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.tok_bytes.append(self.tok_bytes[a] + self.tok_bytes[b])
        self.rank = {p: i for i, p in enumerate(self.merges)}
        self.special = {s: len(self.tok_bytes) + i for i, s in enumerate(SPECIAL_TOKENS)}
        self.bos_id = self.special[BOS_TEXT]
        self.eos_id = self.bos_id
        self.vocab_size = len(self.tok_bytes) + len(SPECIAL_TOKENS)
        self._cache = {}

    # -- serialisation -----------------------------------------------------
    def save(self, path):
        with open(path, "w") as f:
            json.dump({"pre": PRE_TYPE, "merges": self.merges, "special": SPECIAL_TOKENS}, f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            d = json.load(f)
        assert d["pre"] == PRE_TYPE and d["special"] == SPECIAL_TOKENS
        return cls(d["merges"])

    # -- GGUF view -----------------------------------------------------------
    def token_strings(self):
        """Token texts as llama.cpp stores them: GPT-2 byte-encoded strings."""
        out = ["".join(BYTE_ENC[b] for b in tb) for tb in self.tok_bytes]
        return out + SPECIAL_TOKENS

    def merge_strings(self):
        strs = self.token_strings()
        return [f"{strs[a]} {strs[b]}" for a, b in self.merges]

    # -- encoding --------------------------------------------------------------
    def _encode_word(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids = list(word.encode("utf-8"))
        # Repeatedly merge the lowest-ranked adjacent pair (all its occurrences,
        # left to right).  llama.cpp pops the leftmost lowest-rank bigram one at a
        # time; because a merge's result only takes part in later-ranked merges,
        # both procedures give the same result.
        while len(ids) > 1:
            best = min(((self.rank.get(p, 1 << 30), p) for p in zip(ids, ids[1:])))
            if best[0] == 1 << 30:
                break
            a, b = best[1]
            new_id = 256 + best[0]
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        if len(self._cache) < 500_000:
            self._cache[word] = ids
        return ids

    def encode(self, text, add_bos=False):
        """Encode plain text (special-token text is NOT parsed, as in llama.cpp
        with parse_special=false)."""
        out = [self.bos_id] if add_bos else []
        for w in pretokenize(text):
            out.extend(self._encode_word(w))
        return out

    def decode_bytes(self, ids):
        return b"".join(self.tok_bytes[i] if i < len(self.tok_bytes) else b"" for i in ids)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", "replace")
