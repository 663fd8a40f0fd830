"""Where a result comes from: the code's commit and whether the tree was clean, a hash of the
training code, and the protocol that governs it (its version, the commit that last changed the
experiment's section or the common parts, and the section's text hash).

A protocol change covers the experiments whose lines it touches: a line under ``### NAME`` or in the
row ``| NAME | ...`` of a table belongs to experiment NAME; every other line is common and covers
every experiment. ``tests/test_experiments.py`` checks every published result against this history,
and the experiment cache reuses a run only if it started after the change that covers it.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOL = "docs/paper/protocol.md"  # the protocol the verdicts follow, in the repository
PACKAGE = Path(__file__).resolve().parents[1]  # src/alexnet
REPO = PACKAGE.parents[1]  # the checkout, when the package runs from one
# Parts of the package that do not take part in training a run: a change to them leaves a finished
# run valid. Everything else (models, data, engine, training, config, checkpoint, runtime, ...) does.
NOT_TRAINING = (
    "experiments",
    "server",
    "commands",
    "inference",
    "sample",
    "cli.py",
    "__main__.py",
    "bench.py",
    "demo.py",
    "export.py",
    "visualize.py",
    "weights.py",
    "testing.py",
    "version.py",
)


def training_code_hash(package: Path = PACKAGE) -> str:
    """sha256 over the path and bytes of every source file that trains a run (.py, .cpp, recipes'
    .toml), outside ``NOT_TRAINING``: two commits with the same hash train the same runs."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        rel = f.relative_to(package)
        if not f.is_file() or f.suffix not in (".py", ".cpp", ".toml") or rel.parts[0] in NOT_TRAINING:
            continue
        if "__pycache__" in rel.parts:
            continue
        h.update(rel.as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _git(*args: str, root: Path = REPO) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_state(root: Path = REPO) -> dict[str, Any]:
    """The checkout's commit and whether its tracked files are unchanged (None outside a checkout)."""
    head = _git("rev-parse", "HEAD", root=root)
    if head is None:
        return {"commit": None, "clean": None}
    status = _git("status", "--porcelain", "--untracked-files=no", root=root)
    return {"commit": head.strip(), "clean": status is not None and status.strip() == ""}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


# -- the protocol's sections and history --------------------------------------------------------------
def protocol_version_of(text: str) -> int:
    """The protocol's version: ``Version: N`` on a line of its own; the first version had none."""
    m = re.search(r"^Version: (\d+)\s*$", text, re.M)
    return int(m.group(1)) if m else 1


def section_owners(lines: list[str], names: set[str]) -> list[str | None]:
    """For each line of the protocol, the experiment it belongs to (its "### NAME" section or its row
    of a table), or None for the common parts, which cover every experiment."""
    owner: list[str | None] = []
    section: str | None = None
    for line in lines:
        if line.startswith("## "):
            section = None
        elif line.startswith("### "):
            section = line[4:].split(" ", 1)[0]
        row = line.startswith("| ") and line[2:].split(" ", 1)[0]
        owner.append(section if section in names else row if row in names else None)
    return owner


def covered(diff: str, owner: list[str | None]) -> set[str | None]:
    """The owners (``section_owners``) of the lines a ``git show -U0`` diff changed, on its new side;
    a deletion (``+N,0``: the gap after line N) counts as a change of line N."""
    out: set[str | None] = set()
    for start, count in re.findall(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.M):
        first, n = max(int(start), 1), max(int(count or 1), 1)
        out |= {owner[i - 1] if i <= len(owner) else None for i in range(first, first + n)}
    return out


@dataclass(frozen=True)
class Change:
    """One commit of the protocol: when, which experiments it covers (None: the common parts) and the
    protocol version it leaves."""

    commit: str
    when: datetime.datetime
    owners: frozenset[str | None]
    version: int

    def covers(self, name: str) -> bool:
        return None in self.owners or name in self.owners


def protocol_changes(names: set[str], root: Path = REPO, path: str = PROTOCOL) -> list[Change]:
    """Every commit of the protocol, newest first (empty outside a checkout or in a shallow clone,
    whose oldest commit would stand in for the protocol's)."""
    if (_git("rev-parse", "--is-shallow-repository", root=root) or "").strip() != "false":
        return []
    log = _git("log", "--format=%H %cI", "--", path, root=root)
    out = []
    for line in (log or "").splitlines():
        commit, when = line.split()
        text = _git("show", f"{commit}:{path}", root=root) or ""
        diff = _git("show", "-U0", "--format=", commit, "--", path, root=root) or ""
        owners = frozenset(covered(diff, section_owners(text.splitlines(), names)))
        out.append(Change(commit, datetime.datetime.fromisoformat(when), owners, protocol_version_of(text)))
    return out


def section_text(text: str, name: str) -> str:
    """The ``### NAME`` section of the protocol (up to the next heading), and its rows of tables."""
    lines = text.splitlines()
    owner = section_owners(lines, {name})
    return "\n".join(line for line, o in zip(lines, owner) if o == name)


def common_text(text: str, names: set[str]) -> str:
    lines = text.splitlines()
    return "\n".join(line for line, o in zip(lines, section_owners(lines, names)) if o is None)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def protocol_record(name: str, names: set[str], root: Path = REPO, path: str = PROTOCOL) -> dict[str, Any]:
    """What result.json keeps of the protocol: its path, version, the last commit (and its time)
    that covers ``name``, and the hashes of the section's and the common parts' text as they are now."""
    out: dict[str, Any] = {
        "path": path,
        "version": None,
        "commit": None,
        "committed": None,
        "section_sha256": None,
        "common_sha256": None,
    }
    f = root / path
    if not f.is_file():
        return out
    text = f.read_text()
    out.update(
        version=protocol_version_of(text),
        section_sha256=sha256(section_text(text, name)),
        common_sha256=sha256(common_text(text, names)),
    )
    covering = [c for c in protocol_changes(names, root, path) if c.covers(name)]
    if covering:
        out["commit"], out["committed"] = covering[0].commit, covering[0].when.isoformat()
    return out
