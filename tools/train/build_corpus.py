#!/usr/bin/env python3
"""Build the mixed-domain training corpus for the MoE Lens demo model.

Everything comes from material that is on a Debian machine after
`apt-get install manpages manpages-de python3-minimal`, from npm packages in
the project's node_modules, or is generated here from a fixed seed.  The
sources and their licences are listed in SOURCES.md.

Output (default tools/train/data/):
  train.jsonl    one document per line: {"id", "domain", "text"}
  heldout.jsonl  documents never used for training (tokenizer check,
                 evaluation, test fixtures)
  manifest.json  counts and byte sizes per domain and split

The build is deterministic: sources are enumerated in sorted order, the
train/held-out split is a hash of the document id, and generated text uses
seeded RNGs.  (Rendered man pages depend on the installed package versions;
SOURCES.md names the versions this model was trained on.)

Domains:
  en    English prose (Linux man-pages overviews, licence texts, npm READMEs)
  de    German prose (German translations of man pages, manpages-de)
  code  Python source (CPython standard library)
  data  structured data: JSON and CSV (generated records + npm package.json)
  math  arithmetic and elementary algebra (generated)
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys

DOMAINS = ["en", "de", "code", "data", "math"]

# Byte budget per domain for the whole corpus (train + held-out).
BUDGET = {"en": 1_000_000, "de": 1_000_000, "code": 1_000_000,
          "data": 600_000, "math": 400_000}
MAX_DOC = 12_000          # cap per document so that no single source dominates
HELDOUT_PERCENT = 6       # share of documents held out (by hash of id)

# Man pages that are mostly character tables or lists rather than prose.
MAN_SKIP = re.compile(r"^(iso[-_]8859|iso-8859|cp\d|koi8|armscii|ascii|charsets|"
                      r"latin\d|utf-8|utf8|unicode|tis-620|pt154|glibc)", re.I)


def heldout(doc_id):
    h = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16)
    return h % 100 < HELDOUT_PERCENT


def render_man(path):
    """Render a man page to plain UTF-8 text and reflow it into paragraphs."""
    env = dict(os.environ, MANWIDTH="100", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    try:
        out = subprocess.run(
            ["man", "--nh", "--nj", "-E", "UTF-8", "-l", path],
            env=env, capture_output=True, timeout=30).stdout
        out = subprocess.run(["col", "-bx"], input=out, capture_output=True,
                             env=env, timeout=30).stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return ""
    lines = out.split("\n")
    # drop the running header and footer lines ("LS(1)   User Commands   LS(1)")
    if lines and re.search(r"\(\d\w*\)\s*$", lines[0]):
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and re.search(r"\(\d\w*\)\s*$", lines[-1]):
        lines = lines[:-1]
    return reflow(lines)


def reflow(lines):
    """Join wrapped lines of a paragraph; keep headings and short lines."""
    paras, cur = [], []

    def flush():
        if cur:
            paras.append(" ".join(cur))
            cur.clear()

    for ln in lines:
        s = ln.strip()
        if not s:
            flush()
            continue
        indent = len(ln) - len(ln.lstrip())
        if indent == 0:            # section heading such as DESCRIPTION
            flush()
            paras.append(s)
            continue
        if s.startswith("-") and len(s) < 40:   # option line: "-a, --all"
            flush()
            paras.append(s)
            continue
        cur.append(s)
    flush()
    text = "\n\n".join(p for p in paras if p)
    return re.sub(r"[ \t]+", " ", text).strip() + "\n"


def man_pages(package, lang_dir):
    files = subprocess.run(["dpkg", "-L", package], capture_output=True,
                           text=True).stdout.split("\n")
    files = sorted(f for f in files if f.endswith(".gz") and lang_dir in f
                   and os.path.isfile(f) and not os.path.islink(f))
    return files


def md_prose(text):
    """Keep the prose paragraphs of a Markdown README (no code, tables, HTML)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    out = []
    for para in re.split(r"\n\s*\n", text):
        p = para.strip()
        if not p or p[0] in "<|![#>-*" or p.startswith("    "):
            continue
        p = re.sub(r"\s*\n\s*", " ", p)
        p = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", p)     # links -> text
        p = re.sub(r"`([^`]*)`", r"\1", p)
        if len(p) < 80 or sum(c.isalpha() for c in p) < 0.6 * len(p):
            continue
        out.append(p)
    return "\n\n".join(out) + "\n" if out else ""


def take(docs, budget):
    """Take documents in order until the byte budget is used up."""
    out, used = [], 0
    for d in docs:
        if not d["text"].strip():
            continue
        d["text"] = d["text"][:MAX_DOC]
        n = len(d["text"].encode())
        if used + n > budget:
            continue
        out.append(d)
        used += n
    return out


def spread(items, n):
    """Deterministically pick n items spread evenly over a sorted list."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


# --------------------------------------------------------------------- en ---
def docs_en(node_modules):
    docs = []
    for f in spread([f for f in man_pages("manpages", "/man/man")
                     if not MAN_SKIP.match(os.path.basename(f))], 160):
        docs.append({"id": "en:man:" + os.path.basename(f), "domain": "en",
                     "text": render_man(f), "source": "manpages"})
    for lic in ["GPL-3", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "Artistic", "GFDL-1.3"]:
        p = "/usr/share/common-licenses/" + lic
        if os.path.exists(p):
            docs.append({"id": "en:license:" + lic, "domain": "en",
                         "text": reflow(open(p, encoding="utf-8").read().split("\n")),
                         "source": "common-licenses"})
    readmes = sorted(glob.glob(os.path.join(node_modules, "*/[Rr][Ee][Aa][Dd][Mm][Ee].md")) +
                     glob.glob(os.path.join(node_modules, "@*/*/[Rr][Ee][Aa][Dd][Mm][Ee].md")))
    for f in readmes:
        rel = os.path.relpath(f, node_modules)
        docs.append({"id": "en:npm:" + rel, "domain": "en",
                     "text": md_prose(open(f, encoding="utf-8", errors="replace").read()),
                     "source": "npm"})
    # interleave sources so the byte budget is shared between them
    rng = random.Random(11)
    rng.shuffle(docs)
    return take(docs, BUDGET["en"])


# --------------------------------------------------------------------- de ---
def docs_de():
    files = [f for f in man_pages("manpages-de", "/man/de/")
             if not MAN_SKIP.match(os.path.basename(f))]
    docs = []
    for f in spread(files, 260):
        docs.append({"id": "de:man:" + os.path.relpath(f, "/usr/share/man/de"),
                     "domain": "de", "text": render_man(f), "source": "manpages-de"})
    return take(docs, BUDGET["de"])


# ------------------------------------------------------------------- code ---
def docs_code():
    libdir = sorted(glob.glob("/usr/lib/python3.[0-9]*"))[-1]
    files = sorted(glob.glob(libdir + "/*.py")) + sorted(glob.glob(libdir + "/*/*.py"))
    files = [f for f in files if "/test" not in f and "/site-packages" not in f
             and "/dist-packages" not in f]
    docs = []
    for f in spread(files, 400):
        text = open(f, encoding="utf-8", errors="replace").read()
        if len(text) < 1500:
            continue
        if len(text) > MAX_DOC:        # cut at a line boundary
            text = text[:text.rfind("\n", 0, MAX_DOC) + 1]
        docs.append({"id": "code:py:" + os.path.relpath(f, libdir), "domain": "code",
                     "text": text, "source": "cpython"})
    return take(docs, BUDGET["code"])


# ------------------------------------------------------------------- data ---
FIRST = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines",
         "Jonas", "Kira", "Liam", "Maya", "Noah", "Olga", "Paul", "Quinn", "Rosa",
         "Sven", "Tara", "Umar", "Vera", "Wei", "Xenia", "Yusuf", "Zoe"]
LAST = ["Smith", "Müller", "García", "Rossi", "Nowak", "Dubois", "Jensen", "Kim",
        "Silva", "Novák", "Tanaka", "Okafor", "Larsen", "Costa", "Weber", "Meyer"]
CITIES = ["Berlin", "Lyon", "Madrid", "Oslo", "Porto", "Vienna", "Zürich", "Kraków",
          "Seattle", "Toronto", "Osaka", "Nairobi", "Lima", "Dublin", "Athens"]
PRODUCTS = ["keyboard", "monitor", "cable", "lamp", "chair", "desk", "router",
            "headset", "webcam", "charger", "mouse", "speaker", "tablet", "drive"]
STATUS = ["active", "inactive", "pending", "suspended"]
EVENTS = ["login", "logout", "purchase", "refund", "signup", "page_view", "error"]
LEVELS = ["debug", "info", "warn", "error"]


def gen_record(rng, kind, i):
    if kind == "user":
        fn, ln = rng.choice(FIRST), rng.choice(LAST)
        return {"id": i, "name": f"{fn} {ln}",
                "email": f"{fn.lower()}.{ln.lower()}@example.org".replace("ü", "ue"),
                "age": rng.randint(18, 80), "city": rng.choice(CITIES),
                "status": rng.choice(STATUS), "verified": rng.random() < 0.7}
    if kind == "product":
        return {"sku": f"{rng.choice('ABCDEFGH')}{rng.randint(1000, 9999)}",
                "name": rng.choice(PRODUCTS), "price": round(rng.uniform(2, 900), 2),
                "currency": rng.choice(["EUR", "USD", "GBP"]),
                "stock": rng.randint(0, 500),
                "tags": rng.sample(["new", "sale", "eco", "refurbished", "bundle"], 2)}
    if kind == "event":
        return {"timestamp": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                             f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
                "event": rng.choice(EVENTS), "user_id": rng.randint(1, 5000),
                "level": rng.choice(LEVELS), "duration_ms": rng.randint(1, 3000)}
    # config
    return {"name": f"service-{rng.randint(1, 99)}", "port": rng.choice([80, 443, 8080, 5432, 6379]),
            "replicas": rng.randint(1, 8), "enabled": rng.random() < 0.8,
            "limits": {"cpu": f"{rng.choice([250, 500, 1000])}m", "memory": f"{rng.choice([128, 256, 512])}Mi"},
            "env": {"LOG_LEVEL": rng.choice(LEVELS), "REGION": rng.choice(["eu-west", "us-east", "ap-south"])}}


def gen_data_doc(rng, n):
    kind = rng.choice(["user", "product", "event", "config"])
    recs = [gen_record(rng, kind, i + 1) for i in range(rng.randint(4, 14))]
    style = rng.choice(["json", "json", "jsonl", "csv"])
    if style == "json":
        return json.dumps({kind + "s": recs}, indent=rng.choice([2, 4]), ensure_ascii=False) + "\n"
    if style == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in recs]
    cols = list(flat[0].keys())
    lines = [",".join(cols)] + [",".join(str(r[c]).lower() if isinstance(r[c], bool) else str(r[c])
                                         for c in cols) for r in flat]
    return "\n".join(lines) + "\n"


def docs_data(node_modules):
    docs = []
    # real package.json files (licence recorded in each file's "license" field)
    for f in sorted(glob.glob(os.path.join(node_modules, "*/package.json"))):
        try:
            obj = json.load(open(f, encoding="utf-8"))
        except Exception:
            continue
        if str(obj.get("license", "")) not in ("MIT", "ISC", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"):
            continue
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        docs.append({"id": "data:npm:" + os.path.relpath(f, node_modules), "domain": "data",
                     "text": text, "source": "npm"})
    docs = take(docs, BUDGET["data"] // 3)
    rng = random.Random(1234)
    i = 0
    while sum(len(d["text"].encode()) for d in docs) < BUDGET["data"]:
        docs.append({"id": f"data:gen:{i}", "domain": "data",
                     "text": gen_data_doc(rng, i), "source": "generated"})
        i += 1
    return docs


# ------------------------------------------------------------------- math ---
def gen_math_line(rng):
    t = rng.randrange(9)
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    if t == 0:
        return f"{a} + {b} = {a + b}"
    if t == 1:
        a, b = max(a, b), min(a, b)
        return f"{a} - {b} = {a - b}"
    if t == 2:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        return f"{a} * {b} = {a * b}"
    if t == 3:
        b = rng.randint(2, 40)
        q = rng.randint(2, 60)
        return f"{b * q} / {b} = {q}"
    if t == 4:
        x, m, c = rng.randint(-20, 20), rng.randint(2, 12), rng.randint(-50, 50)
        sign = "+" if c >= 0 else "-"
        return f"Solve {m}x {sign} {abs(c)} = {m * x + c}. Then x = {x}."
    if t == 5:
        from math import gcd
        a, b = rng.randint(6, 300), rng.randint(6, 300)
        return f"gcd({a}, {b}) = {gcd(a, b)}"
    if t == 6:
        n = rng.randint(2, 30)
        return f"{n}^2 = {n * n}, and sqrt({n * n}) = {n}"
    if t == 7:
        from fractions import Fraction
        p, q = Fraction(rng.randint(1, 9), rng.randint(2, 12)), Fraction(rng.randint(1, 9), rng.randint(2, 12))
        return f"{p} + {q} = {p + q}"
    c2, c1, c0 = rng.randint(1, 9), rng.randint(1, 9), rng.randint(0, 9)
    return f"d/dx ({c2}x^2 + {c1}x + {c0}) = {2 * c2}x + {c1}"


def docs_math():
    rng = random.Random(4321)
    docs, used, i = [], 0, 0
    while used < BUDGET["math"]:
        lines = [gen_math_line(rng) for _ in range(rng.randint(10, 40))]
        text = "\n".join(lines) + "\n"
        docs.append({"id": f"math:gen:{i}", "domain": "math", "text": text, "source": "generated"})
        used += len(text.encode())
        i += 1
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "data"))
    ap.add_argument("--node-modules", default=os.path.join(here, "..", "..", "node_modules"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    builders = {"en": lambda: docs_en(args.node_modules), "de": docs_de, "code": docs_code,
                "data": lambda: docs_data(args.node_modules), "math": docs_math}
    manifest = {}
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8") as ftr, \
         open(os.path.join(args.out, "heldout.jsonl"), "w", encoding="utf-8") as fho:
        for dom in DOMAINS:
            docs = builders[dom]()
            m = {"train_docs": 0, "train_bytes": 0, "heldout_docs": 0, "heldout_bytes": 0}
            for d in docs:
                split = "heldout" if heldout(d["id"]) else "train"
                (fho if split == "heldout" else ftr).write(json.dumps(d, ensure_ascii=False) + "\n")
                m[split + "_docs"] += 1
                m[split + "_bytes"] += len(d["text"].encode())
            manifest[dom] = m
            print(dom, m, file=sys.stderr)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)


if __name__ == "__main__":
    main()
