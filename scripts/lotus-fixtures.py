#!/usr/bin/env python3
"""Extract the golden fixtures of the API contract from Lotus's generated API documents (and of
the CLI and the miner config from Lotus's generated references).

Lotus generates `documentation/en/api-methods-*.md` from its Go types (`make docsgen`): every
method with its permission, example params and example response. This script turns each document
into JSON, one object per method: {"perm": ..., "params": [...] | null, "response": ...}.
The golden tests in crates/lotus-api/tests/golden.rs read these files; they are data Lotus's
tooling generated, never edited by hand. Re-run after moving the reference commit:

    scripts/lotus-fixtures.py /path/to/lotus.git b835fab7

(the first argument is a Lotus clone or bare mirror; `fetch github:filecoin-project/lotus`).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

DOCS = {
    "worker": "documentation/en/api-methods-worker.md",
    "miner": "documentation/en/api-methods-miner.md",
    # FullNode v1: the chain API the miner calls and the devnet node serves.
    "full": "documentation/en/api-methods-v1-stable.md",
}
OUT = Path(__file__).resolve().parent.parent / "crates" / "lotus-api" / "fixtures"
# Lotus's CLI references (`make docsgen-cli`): every command with its flags. The coverage test
# in crates/lotus/tests/cli_reference.rs reads them.
CLI_DOCS = {
    "cli-miner": "documentation/en/cli-lotus-miner.md",
    "cli-worker": "documentation/en/cli-lotus-worker.md",
}
CLI_OUT = Path(__file__).resolve().parent.parent / "crates" / "lotus" / "tests" / "fixtures"
# Lotus's default miner config (`make docsgen`): every key with its Go type. The config test in
# crates/lotus-node/src/config.rs holds our keys' names and value types to it.
CONFIG_DOCS = {"lotus-miner-config": "documentation/en/default-lotus-miner-config.toml"}
CONFIG_OUT = Path(__file__).resolve().parent.parent / "crates" / "lotus-node" / "fixtures"


def value_after(lines, i, label):
    """The JSON after `label:` at line i: inline (`Inputs: \\`null\\``) or a ```json block.
    Returns (value, next line index)."""
    line = lines[i]
    rest = line[len(label) + 1:].strip()
    if rest.startswith("`"):
        return json.loads(rest.strip("`")), i + 1
    j = i + 1
    while j < len(lines) and not lines[j].startswith("```"):
        j += 1
    k = j + 1
    while k < len(lines) and not lines[k].startswith("```"):
        k += 1
    return json.loads("\n".join(lines[j + 1:k])), k + 1


def parse(text):
    lines = text.splitlines()
    methods = {}
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^### (\w+)\s*$", line)
        if m:
            name = m.group(1)
            methods[name] = {}
            i += 1
            continue
        if name is not None:
            if line.startswith("Perms:"):
                methods[name]["perm"] = line.split(":", 1)[1].strip()
            elif line.startswith("Inputs:"):
                methods[name]["params"], i = value_after(lines, i, "Inputs")
                continue
            elif line.startswith("Response:"):
                methods[name]["response"], i = value_after(lines, i, "Response")
                continue
        i += 1
    for n, m in methods.items():
        missing = {"perm", "params", "response"} - m.keys()
        if missing:
            sys.exit(f"{n}: the document has no {', '.join(sorted(missing))}")
    return methods


def parse_cli(text):
    """Each `## lotus-miner a b` section's command path and its long flags (without `--help`)."""
    commands = {}
    path = None
    in_options = False
    for line in text.splitlines():
        m = re.match(r"^#+ (lotus-\S+)((?: \S+)*)\s*$", line)
        if m:
            path = m.group(2).split()
            commands[" ".join(path)] = []
            in_options = False
            continue
        if path is None:
            continue
        if line.strip() in ("OPTIONS:", "GLOBAL OPTIONS:") or re.match(r"^   [A-Z][A-Z ]+:$", line):
            in_options = True
            continue
        if line.startswith("```"):
            in_options = False
            continue
        fm = re.match(r"^\s+(--[a-z0-9-]+)", line)
        if in_options and fm and fm.group(1) not in ("--help", "--version"):
            commands[" ".join(path)].append(fm.group(1)[2:])
    return commands


def parse_config(text):
    """`Section.Key` -> the Go type its `# type:` comment names."""
    keys = {}
    section, typ = None, None
    for line in text.splitlines():
        m = re.match(r"^\s*\[([A-Za-z.]+)\]\s*$", line)
        if m:
            section, typ = m.group(1), None
            continue
        m = re.match(r"^\s*# type: (.+)$", line)
        if m:
            typ = m.group(1).strip()
            continue
        m = re.match(r"^\s*#([A-Za-z0-9]+) = ", line)
        if m and section and typ:
            keys[f"{section}.{m.group(1)}"] = typ
            typ = None
    return keys


def extract(repo, commit, docs, out, parse_doc, key):
    """Each document of `docs` parsed into `out/<kind>.json` as {"source", key: parsed}."""
    out.mkdir(parents=True, exist_ok=True)
    for kind, path in docs.items():
        text = subprocess.run(
            ["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        parsed = parse_doc(text)
        doc = {"source": f"filecoin-project/lotus@{commit}:{path}", key: parsed}
        (out / f"{kind}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{kind}: {len(parsed)} {key} -> {out / (kind + '.json')}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    repo, commit = sys.argv[1], sys.argv[2]
    extract(repo, commit, DOCS, OUT, parse, "methods")
    extract(repo, commit, CLI_DOCS, CLI_OUT, parse_cli, "commands")
    extract(repo, commit, CONFIG_DOCS, CONFIG_OUT, parse_config, "keys")


if __name__ == "__main__":
    main()
