"""Locate llama.cpp binaries (llama-tokenize, llama-perplexity) built from the
pinned source.  Search order: --bin-dir argument, $LLAMA_BIN_DIR,
<repo>/out/bin, then the CMake build cache ~/.cache/moe-lens/native/*/build/bin."""
import glob
import os
import shutil

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def find_bin(name, bin_dir=None):
    dirs = [bin_dir, os.environ.get("LLAMA_BIN_DIR"), os.path.join(REPO, "out", "bin")]
    dirs += sorted(glob.glob(os.path.expanduser("~/.cache/moe-lens/native/*/build/bin")))
    for d in dirs:
        if d and os.path.isfile(os.path.join(d, name)) and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    p = shutil.which(name)
    if p:
        return p
    raise FileNotFoundError(
        f"{name} not found (looked in {[d for d in dirs if d]}); build it with "
        f"`cmake --build <llama build dir> --target {name}` or pass --bin-dir")
