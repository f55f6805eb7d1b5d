"""HAProxy version specs: what a user writes, and what it promises.

Four kinds, one string each (the CLI's ``--haproxy`` and a matrix's ``versions:``):

- ``debian:<release>``         Debian's haproxy package
                               (bullseye 2.2.9, bookworm 2.6.12, trixie 3.0.11)
- ``source:<version>``         built from the upstream tarball pinned in ``haproxy/catalogue.yaml``
- ``tarball:<path>@<version>`` built from a user's own tarball (patched, unreleased): "custom"
- ``image:<ref>``              any image that has ``haproxy`` on its PATH, e.g. ``haproxy:2.6.15``
- ``git:<path>@<rev>``         built from one commit of a local HAProxy git checkout
                               (its text holds the resolved commit: ``git:<path>@<sha>``)
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from harness import ROOT
from harness.errors import SpecError
from harness.quote import shown

CATALOGUE_PATH = ROOT / "haproxy" / "catalogue.yaml"
TARBALL_DIR = ROOT / "haproxy" / "tarballs"

Kind = Literal["debian", "source", "tarball", "image", "git"]
KINDS: tuple[Kind, ...] = ("debian", "source", "tarball", "image", "git")
# A revision a user may name: a branch, tag, sha, or one with ~N / ^N. Never starts
# with '-' (it would be read as an option), no '..' (a range), no '@' (reflog syntax).
_GIT_REV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+~^-]{0,199}")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([-.+~][\w.+~-]*)?$")
# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest].
# Every component starts with a letter or digit, so no ref can pass for an option
# (``docker pull --help``).
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"(?P<name>(?:{_HOST}/)?{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
# "HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/"
_VV_VERSION = re.compile(r"^HA-?Proxy version (\d+\.\d+(?:\.\d+)?(?:-dev\d+)?)", re.MULTILINE)


class SourceEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    urls: list[str] = Field(min_length=1)


class Catalogue(BaseModel):
    sources: dict[str, SourceEntry]
    debian: dict[str, str]


@cache
def catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    try:
        return Catalogue.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise SpecError(f"{path}: the version catalogue is unreadable: {exc}") from exc


@dataclass(frozen=True)
class VersionSpec:
    """A parsed version spec. ``expected`` is the version ``haproxy -vv`` must report."""

    kind: Kind
    value: str  # release, version, tarball path or image ref
    expected: str | None  # None only for an image whose tag names no version

    @property
    def text(self) -> str:
        if self.kind == "tarball":
            return f"tarball:{self.value}@{self.expected}"
        return f"{self.kind}:{self.value}"

    @property
    def origin(self) -> str:
        """Where the binary comes from, in words a report reader understands."""
        return {
            "debian": f"Debian {self.value} package",
            "source": "upstream source",
            "tarball": f"custom tarball {Path(self.value).name}",
            "image": f"image {self.value}",
            "git": f"git commit {self.value.rpartition('@')[2][:12]}",
        }[self.kind]

    @property
    def label(self) -> str:
        """Short name for tables: version and origin, e.g. ``2.6.12 (debian:bookworm)``."""
        version = self.expected or "?"
        if self.kind == "tarball":
            return f"{version} (custom)"
        if self.kind == "source":
            return f"{version} (source)"
        if self.kind == "git":
            return f"{version} (git {self.git_commit[:12]})"
        return f"{version} ({self.text})"

    @property
    def custom(self) -> bool:
        return self.kind == "tarball"

    @property
    def git_path(self) -> str:
        """A git spec's checkout (absolute)."""
        return self.value.rpartition("@")[0]

    @property
    def git_commit(self) -> str:
        """A git spec's commit: 40 hex digits, resolved when the spec was parsed."""
        return self.value.rpartition("@")[2]

    def tarball_digest(self) -> str:
        """sha256 of a custom tarball: part of the image tag, so two patches never collide."""
        return file_sha256(Path(self.value))


def parse(text: str, where: str = "--haproxy") -> VersionSpec:
    """Parse one spec string; ``where`` names its place in an error message."""
    kind, sep, value = text.partition(":")
    if not sep or kind not in KINDS or not value:
        raise SpecError(
            f"{where}: {shown(text)} is not a version spec. Write one of debian:<release>, "
            "source:<version>, tarball:<path>@<version>, image:<ref> or git:<path>@<rev> "
            "(e.g. debian:bookworm, source:2.6.15, image:haproxy:2.6.15)."
        )
    cat = catalogue()
    if kind == "debian":
        if value not in cat.debian:
            known = ", ".join(f"debian:{r} ({v})" for r, v in cat.debian.items())
            raise SpecError(f"{where}: unknown Debian release {shown(value)}. Known: {known}.")
        return VersionSpec("debian", value, cat.debian[value])
    if kind == "source":
        if value not in cat.sources:
            known = ", ".join(cat.sources)
            raise SpecError(
                f"{where}: no pinned tarball for HAProxy {shown(value)} in {CATALOGUE_PATH}. "
                f"Known: {known}. Add an entry with its sha256, or use "
                f"tarball:<path>@{value} for a tarball of your own."
            )
        local = TARBALL_DIR / f"haproxy-{value}.tar.gz"
        if local.is_file():
            # Found now, not after minutes of building the images before it.
            actual = file_sha256(local)
            if actual != cat.sources[value].sha256:
                raise SpecError(
                    f"{where}: {local} has sha256 {actual}, but {CATALOGUE_PATH} pins "
                    f"{cat.sources[value].sha256} for HAProxy {value}: it is not that release "
                    "(or it is damaged). Delete it (the pinned tarball is then downloaded), "
                    f"or replace it with the genuine haproxy-{value}.tar.gz; for a patched "
                    f"tarball use tarball:<path>@{value}."
                )
        return VersionSpec("source", value, value)
    if kind == "tarball":
        path, at, version = value.rpartition("@")
        if not at or not path or not _VERSION.match(version):
            raise SpecError(
                f"{where}: {shown(text)} needs an explicit version: tarball:<path>@<version>, "
                "e.g. tarball:./haproxy-2.6.15-patched.tar.gz@2.6.15"
            )
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_file():
            raise SpecError(
                f"{where}: tarball {shown(path)} does not exist (looked at {resolved}). Give the "
                "path of an HAProxy source tarball (.tar.gz), relative to where you run the "
                "harness or absolute."
            )
        _check_source_tarball(resolved, version, where)
        return VersionSpec("tarball", str(resolved), version)
    if kind == "git":
        return _parse_git(value, where)
    check_image_ref(value, where)
    return VersionSpec("image", value, _version_in_tag(value))


def check_recorded(text: str, where: str) -> str:
    """A version spec as a record spells it (``VersionSpec.text``), checked by its form
    alone: a known kind, a value, printable, at most 300 characters. Nothing is resolved
    (no path looked at, no ``git`` run): a run folder's spec names the host it ran on.
    Returns ``text``; raises SpecError."""
    kind, sep, value = text.partition(":")
    if not sep or kind not in KINDS or not value or len(text) > 300 or not text.isprintable():
        raise SpecError(
            f"{where}: {shown(text)} is not a version spec as the harness records one "
            "(debian:<release>, source:<version>, tarball:<path>@<version>, image:<ref> or "
            "git:<path>@<commit>)."
        )
    return text


# What a checkout's own configuration may set for the harness to run git in it: keys
# that name no program. Others can run one (git-config(1)): tar.<format>.command for
# ``git archive`` (measured: a checkout's ``tar.tar.gz.command`` ran when an image was
# built from it), filter.<driver>.smudge for a file the tree's .gitattributes marks,
# core.fsmonitor, diff.<driver>.textconv, include.path pulls in any file. A checkout
# named by a shared matrix or a run folder (rerun, --resume) is not the user's own.
_SAFE_GIT_CONFIG = re.compile(
    r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase"
    r"|precomposeunicode|symlinks)"
    r"|extensions\.(objectformat|worktreeconfig)"
    r"|remote\.[^\n]+\.(url|fetch|pushurl|tagopt)"
    r"|branch\.[^\n]+\.(remote|merge|rebase)"
    r"|user\.(name|email)|init\.defaultbranch|pull\.(rebase|ff)|advice\.[a-z]+"
)


def _git_run(path: str | Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
         "-C", str(path), *args],
        capture_output=True, text=True, check=False, timeout=300,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
             "GIT_CONFIG_NOSYSTEM": "1"},
    )  # fmt: skip


def check_git_config(path: str | Path) -> None:
    """Refuse a checkout whose own configuration (local, worktree, or a file it
    includes) sets a key outside :data:`_SAFE_GIT_CONFIG`: such a key may name a program
    git runs. Reading it runs none (``git config --list --show-scope --name-only``).
    Raises SpecError naming the key and the checkout."""
    listed = _git_run(path, ["config", "--list", "--show-scope", "--name-only", "--includes"])
    for line in listed.stdout.splitlines():
        scope, _, key = line.partition("\t")
        if scope in ("command", "global", "system"):  # ours (-c), and none (see _git_run)
            continue
        if not _SAFE_GIT_CONFIG.fullmatch(key.lower()):
            raise SpecError(
                f"the git checkout {shown(str(path))} sets {shown(key)} in its own "
                "configuration, a key that may name a program git runs; the harness runs "
                "git only in checkouts whose configuration sets none (a shared matrix or "
                f"run folder can name any checkout). Remove it (git -C {shown(str(path))} "
                f"config --unset {shown(key)}) or use a fresh clone."
            )


def git(path: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``git -C path args...`` as an argument list (no shell), in a checkout whose
    configuration names no program (:func:`check_git_config`), with fsmonitor and hooks
    off and no terminal prompt. Raises SpecError when the checkout's configuration is
    refused, or when git fails and ``check``."""
    check_git_config(path)
    proc = _git_run(path, list(args))
    if check and proc.returncode != 0:
        raise SpecError(f"git {' '.join(args[:2])} in {path}: {proc.stderr.strip()[:300]}")
    return proc


def _parse_git(value: str, where: str) -> VersionSpec:
    """``<path>@<rev>``: a local checkout and a revision in it, resolved to its commit
    (``git rev-parse --verify --end-of-options <rev>^{commit}``). The version promised
    is the commit's VERSION file (as in release tarballs), else its nearest ``v*`` tag."""
    path, at, rev = value.rpartition("@")
    form = (
        "Write git:<path>@<rev>, <path> a local HAProxy git checkout and <rev> a commit, "
        "branch or tag in it, e.g. git:./haproxy@v2.6.12 or git:/src/haproxy@HEAD~3."
    )
    if not at or not path or not _GIT_REV.fullmatch(rev) or ".." in rev:
        raise SpecError(f"{where}: {shown('git:' + value)} is not a git spec. {form}")
    if any(ord(c) < 32 for c in path):
        raise SpecError(f"{where}: the path {shown(path)} holds a control character. {form}")
    resolved = Path(path).expanduser().resolve()
    if not (resolved / ".git").exists():
        raise SpecError(
            f"{where}: {shown(path)} is not a git checkout (no .git in {resolved}). {form}"
        )
    found = git(resolved, "rev-parse", "--verify", "--quiet", "--end-of-options",
                f"{rev}^{{commit}}", check=False)  # fmt: skip
    sha = found.stdout.strip()
    if found.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise SpecError(f"{where}: no commit {shown(rev)} in {resolved}. {form}")
    return VersionSpec("git", f"{resolved}@{sha}", git_version(resolved, sha))


def git_version(path: Path, sha: str) -> str | None:
    """The HAProxy version of a commit: its VERSION file, else ``git describe``'s tag."""
    shown_file = git(path, "show", "--no-textconv", f"{sha}:VERSION", check=False)
    text = shown_file.stdout.strip() if shown_file.returncode == 0 else ""
    if not _VERSION.match(text):
        tag = git(path, "describe", "--tags", "--match", "v*", "--abbrev=0", sha, check=False)
        text = tag.stdout.strip().removeprefix("v") if tag.returncode == 0 else ""
    match = re.match(r"\d+\.\d+(?:\.\d+)?(?:-dev\d+)?", text)
    return match.group(0) if match else None


def check_image_ref(ref: str, where: str) -> None:
    """Refuse what Docker would refuse as an image reference (or read as an option):
    ``[host[:port]/]name[:tag][@sha256:<64 hex>]``, the name's components lowercase.
    Raises SpecError with the grammar and an example."""
    match = _IMAGE_REF.fullmatch(ref) if len(ref) <= 512 else None
    if match is None or len(match["name"]) > 255:
        raise SpecError(
            f"{where}: {shown(ref)} is not an image reference Docker accepts. Write "
            "image:[host[:port]/]name[:tag][@sha256:<64 hex digits>]: the name's parts in "
            "lowercase letters, digits and . _ - (not first), the tag up to 128 of letters, "
            "digits and _ . - (not first), no spaces. E.g. image:haproxy:2.6.15 or "
            "image:registry.example.com:5000/team/haproxy:2.6.15."
        )


@cache
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """A tarball's sha256, hashed once per process: the spec check and the image build
    both need it (a replaced file is hashed again: size and mtime are the cache key)."""
    stat = path.stat()
    return _sha256_of(path, stat.st_size, stat.st_mtime_ns)


def _check_source_tarball(path: Path, version: str, where: str) -> None:
    """What the image build would find out minutes later: the file is a gzipped tar of an
    HAProxy source tree (``<dir>/Makefile``), of the version the spec promises (its
    ``<dir>/VERSION``, when it has one)."""
    found: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.strip("/").split("/")
                if len(parts) == 2 and parts[1] in ("Makefile", "VERSION") and member.isfile():
                    if parts[1] == "VERSION":
                        data = tar.extractfile(member)
                        found["VERSION"] = data.read(100).decode(errors="replace") if data else ""
                    else:
                        found["Makefile"] = ""
                if len(found) == 2:
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SpecError(
            f"{where}: {path} is not a .tar.gz archive ({exc}). Give HAProxy's source "
            "tarball, e.g. haproxy-2.6.15.tar.gz from haproxy.org, or a patched tree packed "
            "with 'tar -czf NAME.tar.gz haproxy-2.6.15/'."
        ) from None
    if "Makefile" not in found:
        raise SpecError(
            f"{where}: {path} holds no <dir>/Makefile: it is not an HAProxy source tree "
            "(the build unpacks its top folder and runs make there). Pack the tree with "
            "'tar -czf NAME.tar.gz haproxy-X.Y.Z/'."
        )
    packed = found.get("VERSION", "").strip()
    if _VERSION.match(packed) and packed.split("-")[0] != version.split("-")[0]:
        raise SpecError(
            f"{where}: {path} says it is HAProxy {packed} (its VERSION file), but the spec "
            f"says @{version}. Write tarball:<path>@{packed}, or give the right tarball."
        )


def _version_in_tag(ref: str) -> str | None:
    """``haproxy:2.6.15`` and ``haproxy:2.6.15-bookworm`` promise 2.6.15; ``haproxy:lts``
    promises nothing."""
    if "@" in ref:
        ref = ref.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    match = re.match(r"^(\d+\.\d+\.\d+)", tag)
    return match.group(1) if match else None


def version_from_vv(vv: str) -> str | None:
    """The upstream version in ``haproxy -vv`` output, without Debian's revision."""
    match = _VV_VERSION.search(vv)
    return match.group(1) if match else None


def check_reported(spec: VersionSpec, vv: str) -> str:
    """Return the reported version; raise if it contradicts the spec."""
    reported = version_from_vv(vv)
    if reported is None:
        raise SpecError(
            f"{spec.text}: 'haproxy -vv' printed no version line; "
            f"is this an HAProxy image?\n{vv[:500]}"
        )
    if spec.expected is not None and reported != spec.expected:
        raise SpecError(
            f"{spec.text}: the image reports HAProxy {reported} but the spec promises "
            f"{spec.expected}. Fix the spec (or the catalogue) so they agree."
        )
    return reported
