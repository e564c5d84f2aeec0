"""Shared plumbing of the training recipe: the work directory, stage markers, timing, logs.

Every stage writes its results under WORK/<stage>/ and finishes by writing WORK/<stage>/DONE,
so a rerun skips what is finished and a stage cut short by its time budget resumes from its
last checkpoint (kept in the same folder)."""
import json
import os
import sys
import time

T0 = time.time()


def log(*args):
    msg = " ".join(str(a) for a in args)
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def stage_dir(work, name):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    return d


def is_done(work, name):
    return os.path.exists(os.path.join(work, name, "DONE"))


def mark_done(work, name, summary):
    d = stage_dir(work, name)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(d, "DONE"), "w") as f:
        f.write("ok\n")
    log(f"stage {name} done: {json.dumps(summary)}")


def read_summary(work, name):
    with open(os.path.join(work, name, "summary.json")) as f:
        return json.load(f)


class Deadline:
    """The wall-clock budget of this invocation: stages poll it and checkpoint when it nears."""

    def __init__(self, seconds):
        self.end = T0 + seconds

    def left(self):
        return self.end - time.time()

    def near(self, margin=20.0):
        return self.left() < margin


def die(msg):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)
