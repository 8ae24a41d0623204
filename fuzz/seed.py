#!/usr/bin/env python3
"""Seeds the fuzz corpora from the repository's examples and tests, reproducibly.

    fuzz/seed.py            # writes fuzz/corpus/{config,known_hosts,socks_proto,control_request}/seed-*

- config: every examples/*.toml, and every TOML-looking string literal of
  crates/tunneld-config/tests/*.rs (with `{NAME}` of the file's `const NAME: &str` filled in,
  and again after the file's `DEFAULTS` when it has one, as its tests parse them).
- known_hosts: every known_hosts-looking literal of crates/tunneld-ssh/src/known_hosts/tests.rs
  and crates/tunneld-ssh/tests/known_hosts.rs (keys made at run time there become a fixed key),
  plus a line hashed as `ssh-keygen -H` hashes, each behind a first line naming a host and port
  that those tests look up (the target's input format: `HOST [PORT]\\nFILE`).
- socks_proto: a few well-formed conversations (the target also starts well from nothing).
- control_request: every request line of docs/control.md's examples, and a few refused ones.

Seeds are named by their content's hash, so running this again adds nothing new. The corpora are
not committed (see fuzz/README.md); minimise them with `-merge=1` after a run.
"""

import base64
import hashlib
import hmac
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def literals(source):
    """The string literals of Rust `source` with their escapes resolved, in order; comments and
    character literals skipped. `const NAME: &str = "...";` ones are also returned by name."""
    out, consts, i = [], {}, 0
    while i < len(source):
        c = source[i]
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = len(source) if i < 0 else i
            continue
        raw = re.match(r'b?r(#*)"', source[i:])
        if raw and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            close = '"' + raw.group(1)
            start = i + raw.end()
            end = source.find(close, start)
            out.append((start, source[start:end]))
            i = end + len(close)
            continue
        if c == "'":
            char = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x..|\\.|[^\\'])'", source[i:])
            i += char.end() if char else 1
            continue
        if c == '"':
            start, i, text = i, i + 1, []
            while source[i] != '"':
                if source[i] == "\\":
                    nxt = source[i + 1]
                    if nxt == "\n":
                        i += 2
                        while source[i] in " \t\n\r":
                            i += 1
                        continue
                    if nxt == "u":
                        end = source.index("}", i)
                        text.append(chr(int(source[i + 3 : end], 16)))
                        i = end + 1
                        continue
                    if nxt == "x":
                        text.append(chr(int(source[i + 2 : i + 4], 16)))
                        i += 4
                        continue
                    text.append(ESCAPES.get(nxt, nxt))
                    i += 2
                    continue
                text.append(source[i])
                i += 1
            i += 1
            out.append((start, "".join(text)))
            continue
        i += 1
    for match in re.finditer(r"const (\w+): &str =\s*", source):
        for start, text in out:
            if start >= match.end():
                consts[match.group(1)] = text
                break
    return [text for _, text in out], consts


def fill(text, consts, default):
    """`{NAME}` placeholders of format strings filled from `consts`, others with `default`."""
    text = re.sub(r"\{(\w*)(:[^}]*)?\}", lambda m: consts.get(m.group(1), default), text)
    return text.replace("{{", "{").replace("}}", "}")


def write(kind, data):
    folder = CORPUS / kind
    folder.mkdir(parents=True, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    (folder / name).write_bytes(data)


def config_seeds():
    seeds = {path.read_bytes() for path in sorted((ROOT / "examples").glob("*.toml"))}
    for path in sorted((ROOT / "crates/tunneld-config/tests").glob("*.rs")):
        texts, consts = literals(path.read_text())
        prefix = consts.get("DEFAULTS", "")
        for text in texts:
            if not re.search(r"^\s*\[|^\s*[\w\"-]+\s*=", text, re.M) or "=" not in text:
                continue
            text = fill(text, consts, "x")
            seeds.add(text.encode())
            if prefix:
                seeds.add((prefix + text).encode())
    for seed in seeds:
        write("config", seed)
    return len(seeds)


def known_hosts_seeds():
    entry = re.compile(r"^\s*(@[\w-]+\s+)?\S+\s+(ssh-[\w@.-]+|ecdsa-sha2-\w+)\s+AAAA", re.M)
    files, lookups = set(), {("db.example.com", 22), ("127.0.0.1", 2222), ("::1", 22)}
    for rel in ["crates/tunneld-ssh/src/known_hosts/tests.rs", "crates/tunneld-ssh/tests/known_hosts.rs"]:
        source = (ROOT / rel).read_text()
        texts, consts = literals(source)
        default = consts.get("ED_A", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp")
        for text in texts:
            text = fill(text, consts, default)
            if entry.search(text) and "refusing" not in text:
                files.add(text)
        for host, port in re.findall(r'\.check\(\s*"([^"]*)",\s*(\d+)', source):
            lookups.add((host, int(port)))
    # A name hashed as `ssh-keygen -H` does: |1|base64(salt)|base64(HMAC-SHA1(salt, name)).
    salt = bytes(range(20))
    digest = hmac.new(salt, b"[127.0.0.1]:2222", "sha1").digest()
    hashed = "|1|{}|{}".format(base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    any_key = next(iter(sorted(f for f in files if f.startswith("ssh-ed25519"))), "")
    files.add(f"{hashed} {any_key}\n*.example.com,!web.example.com {any_key}\n")
    seeds = set()
    # Each file with two of the lookups, in turn: every file and every lookup is in some seed.
    lookups = sorted(lookups)
    for i, content in enumerate(sorted(files)):
        for host, port in (lookups[i % len(lookups)], lookups[(i + 1) % len(lookups)]):
            head = host if port == 22 else f"{host} {port}"
            seeds.add(f"{head}\n{content}".encode())
    for seed in seeds:
        write("known_hosts", seed)
    return len(seeds)


def socks_seeds():
    seeds = [
        b"\x00\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
        b"\x07\x05\x01\x02\x01\x04user\x04pass\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        b"\x03\x05\x01\x00\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x16",
        b"\x01\x04\x01\x00\x50\x7f\x00\x00\x01user\x00",
        b"\x02\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00",
    ]
    for seed in seeds:
        write("socks_proto", seed)
    return len(seeds)


def control_seeds():
    text = (ROOT / "docs" / "control.md").read_text()
    seeds = {line.encode() for line in re.findall(r'^(\{"version":1,"command".*\})$', text, re.M)}
    seeds |= {
        b'{"version":2,"command":"status"}',
        b'{"version":1,"command":"reconnect","tunnels":[],"all":false}',
        b'{"version":1,"command":"status","tunnels":["a\\u00e9\\n"],"extra":null}',
    }
    for seed in seeds:
        write("control_request", seed)
    return len(seeds)


if __name__ == "__main__":
    print(f"config: {config_seeds()} seeds")
    print(f"known_hosts: {known_hosts_seeds()} seeds")
    print(f"socks_proto: {socks_seeds()} seeds")
    print(f"control_request: {control_seeds()} seeds")
