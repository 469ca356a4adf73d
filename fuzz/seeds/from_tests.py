"""Seed corpora of the parser fuzz targets, from the case tables of their tests.

Reads the string literals of the unit tests of each parser (the `mod tests`
part of a source file, or a whole `…/tests.rs`), keeps those that are inputs
rather than case labels or expected messages, and writes each as one file:

  corpus/magic_args/  the magic grammar, %px options and targets, %ssh_tunnel
  corpus/sql_lex/     the SQL statement lexer
  corpus/sql_url/     connection URLs (and what follows their password)

Of those, a few dozen that reach the most branches are kept: each candidate's
branches come from libFuzzer's merge (`-merge=1`) with the built target, so
build the targets first (`fuzz/run.sh build`); `--all` keeps every candidate.
Files are named t-<sha1 of the content>; the files named t-* that it wrote
before are replaced, nothing else is touched. Run it after the tests change:

    python3 fuzz/seeds/from_tests.py
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUZZ = Path(__file__).resolve().parent.parent
CORPUS = FUZZ / "corpus"
BIN = FUZZ / "target" / "x86_64-unknown-linux-gnu" / "release"
# A few dozen seeds at most, each reaching a couple of branches the others do
# not: the fuzzer finds the last few itself in seconds.
MAX_SEEDS = 40
MIN_GAIN = 2

# A Rust string literal: raw (r"…", r#"…"#) or escaped ("…"); not byte strings.
LITERAL = re.compile(
    r"""(?<![\w'])(?:r(?P<hashes>\#*)"(?P<raw>.*?)"(?P=hashes)|"(?P<esc>(?:[^"\\]|\\.)*)")""",
    re.S,
)
ESCAPE = re.compile(r"""\\(?:u\{(?P<u>[0-9a-fA-F]+)\}|x(?P<x>[0-9a-fA-F]{2})|\n\s*|(?P<c>.))""", re.S)
SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def unescape(s: str) -> str:
    def one(m: re.Match) -> str:
        if m["u"]:
            return chr(int(m["u"], 16))
        if m["x"]:
            return chr(int(m["x"], 16))
        if m["c"] is None:  # a line continuation
            return ""
        return SIMPLE[m["c"]]

    return ESCAPE.sub(one, s)


def test_code(path: Path) -> str:
    """The test part of a source file: all of a tests.rs, else what follows
    `#[cfg(test)]` + `mod tests`."""
    text = path.read_text()
    if path.name == "tests.rs":
        return text
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    assert m, f"{path}: no `mod tests {{`"
    return text[m.end() :]


def literals(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        code = test_code(ROOT / p)
        # Comments may hold quotes: drop them (not inside strings: good enough here).
        code = re.sub(r"^\s*//.*$", "", code, flags=re.M)
        for m in LITERAL.finditer(code):
            out.append(m["raw"] if m["raw"] is not None else unescape(m["esc"]))
    return out


def is_label(s: str) -> bool:
    """A case label or an expected message: prose, not input."""
    if re.match(r"^%\w+: ", s):  # an error as shown: "%px: unknown option …"
        return True
    if "{" in s and "}" in s:  # a format string of a message
        return True
    return bool(re.fullmatch(r"[a-z][a-z ,'()-]*", s)) and " " in s


def magic_args() -> list[str]:
    lits = literals(
        [
            "contract/src/parse/tests.rs",
            "px/src/options.rs",
            "px/src/targets.rs",
            "ssh/src/args.rs",
        ]
    )
    return [s for s in lits if not is_label(s)]


SQLISH = re.compile(r"(?i)\b(select|insert|create|do)\b|[;:$'\"]|--|/\*")


def sql_lex() -> list[str]:
    return [s for s in literals(["sql/src/lex.rs"]) if SQLISH.search(s) and not is_label(s)]


def sql_url() -> list[str]:
    urls = [s for s in literals(["sql/src/url/tests.rs"]) if "://" in s or "@" in s]
    # The target also reads its input after "postgresql://user:PASSWORD":
    # what follows the password in the cases.
    tails = [u[u.index("@") :] for u in urls if "://" in u and "@" in u]
    return urls + tails


def features(binary: Path, data: bytes, tmp: Path) -> set[str]:
    """The branches one input reaches (edges, not hit counts), as libFuzzer's
    merge reports them (`-merge_control_file`)."""
    cand, out, control = tmp / "candidate", tmp / "out", tmp / "control"
    for d in (cand, out):
        d.mkdir(exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    (cand / "input").write_bytes(data)
    control.unlink(missing_ok=True)  # else the merge resumes the last one
    subprocess.run(
        [binary, "-merge=1", "-use_counters=0", "-detect_leaks=0",
         f"-merge_control_file={control}", out, cand],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for line in control.read_text().splitlines():
        if line.startswith("FT 0"):
            return set(line.split()[2:])
    return set()


def merged(target: str, inputs: list[bytes]) -> list[bytes]:
    """A small set of the inputs that reaches (nearly) every branch they reach
    together: the input that adds the most branches is taken, then the next,
    until none adds MIN_GAIN or MAX_SEEDS are taken."""
    binary = BIN / target
    if not binary.exists():
        sys.exit(f"{binary.relative_to(FUZZ)} is not built: run `fuzz/run.sh build` (or pass --all)")
    with tempfile.TemporaryDirectory() as t:
        reach = {k: features(binary, data, Path(t)) for k, data in enumerate(inputs)}
    covered: set[str] = set()
    chosen = []
    while reach and len(chosen) < MAX_SEEDS:
        # Most new branches first; then the shorter input, then the first.
        k = min(reach, key=lambda k: (-len(reach[k] - covered), len(inputs[k]), k))
        gain = len(reach[k] - covered)
        if gain < MIN_GAIN:
            break
        covered |= reach.pop(k)
        chosen.append(k)
    return [inputs[k] for k in chosen]


def write(target: str, inputs: list[str], merge: bool) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    unique = list({s.encode(): None for s in inputs if s})
    kept = merged(target, unique) if merge else unique
    for old in d.glob("t-*"):
        old.unlink()
    for data in kept:
        (d / f"t-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
    print(f"{target}: {len(kept)} of {len(unique)} inputs")


def main() -> None:
    merge = "--all" not in sys.argv[1:]
    write("magic_args", magic_args(), merge)
    write("sql_lex", sql_lex(), merge)
    write("sql_url", sql_url(), merge)


if __name__ == "__main__":
    main()
