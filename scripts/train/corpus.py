"""The training corpus: the Python sources and documentation of the packages installed on the
training machine, kept only where the package declares a permissive license, deduplicated by
content, split into a training and a held-out part by a hash of the content.

Nothing is downloaded. The manifest (package, version, license, files, bytes) is written next to
the corpus so that models/README.md can state exactly what the models were trained on."""
import hashlib
import importlib.metadata as md
import json
import os
import re
import sysconfig

from common import log

SUFFIXES = (".py", ".pyi", ".md", ".rst", ".txt")
MAX_FILE_BYTES = 512 * 1024          # larger files are mostly generated tables
HELD_OUT_PERCENT = 2                 # of the files, chosen by content hash
PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|PSF|Python Software Foundation|ISC|Unlicense|Zlib)\b",
                        re.IGNORECASE)


def dist_license(dist):
    meta = dist.metadata
    texts = [meta.get("License-Expression") or "", (meta.get("License") or "")[:200]]
    texts += [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    joined = " ".join(t for t in texts if t)
    return joined.strip() or "unknown"


def candidate_sources():
    """(package, version, license, [paths]) for the standard library and each distribution."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "test",
                                                      "tests", "idlelib", "__pycache__"))
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(SUFFIXES)]
    yield ("python-stdlib", sysconfig.get_python_version(), "PSF-2.0", files)
    seen = set()
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        paths = []
        for f in dist.files or []:
            p = str(f)
            if p.endswith(SUFFIXES) and "/tests/" not in p and "__pycache__" not in p:
                paths.append(str(dist.locate_file(f)))
        yield (name, dist.version, dist_license(dist), sorted(paths))


def build(out_dir, max_bytes):
    """Writes train.txt / heldout.txt style lists of documents as JSON lines and a manifest."""
    seen_hashes = set()
    manifest, n_train, n_held, total = [], 0, 0, 0
    ftrain = open(os.path.join(out_dir, "train.jsonl"), "w")
    fheld = open(os.path.join(out_dir, "heldout.jsonl"), "w")
    for name, version, lic, paths in candidate_sources():
        if not PERMISSIVE.search(lic):
            manifest.append({"package": name, "version": version, "license": lic,
                             "used": False, "files": 0, "bytes": 0})
            continue
        used_files = used_bytes = 0
        for p in paths:
            if total >= max_bytes:
                break
            try:
                if os.path.getsize(p) > MAX_FILE_BYTES:
                    continue
                with open(p, "rb") as f:
                    raw = f.read()
                text = raw.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if len(text.strip()) < 64:
                continue
            digest = hashlib.sha1(raw).hexdigest()
            if digest in seen_hashes:
                continue
            seen_hashes.add(digest)
            held = int(digest[:4], 16) % 100 < HELD_OUT_PERCENT
            rec = json.dumps({"path": p, "kind": os.path.splitext(p)[1], "text": text})
            (fheld if held else ftrain).write(rec + "\n")
            n_held += held
            n_train += not held
            used_files += 1
            used_bytes += len(raw)
            total += len(raw)
        manifest.append({"package": name, "version": version, "license": lic, "used": True,
                         "files": used_files, "bytes": used_bytes})
    ftrain.close()
    fheld.close()
    summary = {"train_files": n_train, "heldout_files": n_held, "bytes": total,
               "packages_used": sum(1 for m in manifest if m["used"] and m["files"]),
               "packages_refused": [m["package"] for m in manifest if not m["used"]]}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"summary": summary, "packages": manifest}, f, indent=1)
    log(f"corpus: {n_train} training files, {n_held} held out, {total / 1e6:.1f} MB")
    return summary


def documents(path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)
