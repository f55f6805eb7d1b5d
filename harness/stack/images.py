"""Every image a cell needs, built hermetically and only when its inputs change.

- base images: ``debian:<release>-slim`` when a registry answers, else debootstrap +
  ``docker import`` from Debian's mirror; tagged ``harness-base:<release>``;
- one HAProxy image per version spec (``harness-haproxy:<version>-<origin>``);
- the backend, the Locust client and the observer (``harness-<name>:latest``).

Builds run through ``docker compose build`` because it uses BuildKit, whose build
secrets carry the host's pip CA bundle and index settings into ``pip install`` without
leaving them in a layer (the Docker SDK's build is the legacy builder: no secrets).
Each image carries a ``harness.inputs`` label: the hash of its Dockerfile, context,
build arguments and base image id. A matching label means "up to date": no rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from harness import ROOT
from harness.errors import CellError, ImageError
from harness.plan.versions import (
    TARBALL_DIR,
    VersionSpec,
    catalogue,
    check_reported,
    file_sha256,
    git,
)
from harness.stack import security
from harness.stack.compose import CommandLog, Compose, client, redact

BUILD_DIR = ROOT / "build"
PULL_TIMEOUT_S = 300  # an image: spec's pull; a registry that does not answer is an error
INPUTS_LABEL = "harness.inputs"
DEBIAN_MIRROR = os.environ.get("HARNESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUPPORT_IMAGES = {
    "backend": ROOT / "backends",
    "client": ROOT / "clients",
    # Python requests, Node's http and Go's net/http (the field notes' own clients)
    "client-native": ROOT / "clients-native",
    "observer": ROOT / "observers",
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class HaproxyImage:
    spec: VersionSpec
    tag: str
    image_id: str
    version: str  # as reported by haproxy -vv
    vv: str  # the full haproxy -vv output: build options, OpenSSL, pollers


@dataclass(frozen=True)
class ImageSet:
    haproxy: dict[str, HaproxyImage]  # by spec text
    support: dict[str, str]  # backend / client / observer -> tag


# --- base images -------------------------------------------------------------------


def ensure_base(release: str, log: CommandLog, progress: Progress = _quiet) -> str:
    """``harness-base:<release>``: pulled where a registry answers, else debootstrapped."""
    tag = f"harness-base:{release}"
    if _image_id(tag):
        return tag
    if _pull(f"debian:{release}-slim", log) is None:
        log.run(["docker", "tag", f"debian:{release}-slim", tag], timeout=60)
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageError(
            f"cannot pull debian:{release}-slim and debootstrap is not installed. "
            "Run 'make engine' (installs it on Debian) or 'apt-get install debootstrap'."
        )
    progress(
        f"building base image {tag} with debootstrap from {redact(DEBIAN_MIRROR)} (about 30 s)"
    )
    with tempfile.TemporaryDirectory(prefix=f"harness-base-{release}-") as tmp:
        root = Path(tmp) / "root"
        log.run(
            ["debootstrap", "--variant=minbase", release, str(root), DEBIAN_MIRROR], timeout=900
        )
        _slim(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            log.run(
                [
                    "docker",
                    "import",
                    "--change",
                    'CMD ["bash"]',
                    "--change",
                    f"LABEL {INPUTS_LABEL}=debootstrap-{release}",
                    "-",
                    tag,
                ],
                timeout=600,
                stdin=tar.stdout.read(),
            )
        finally:
            tar.wait()
    return tag


def _slim(root: Path) -> None:
    """What debian:*-slim leaves out: docs, man pages, apt caches."""
    for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt/archives"):
        shutil.rmtree(root / rel, ignore_errors=True)
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()


# --- pip passthrough -------------------------------------------------------------------


@dataclass(frozen=True)
class PipSettings:
    cert: Path | None
    index_url: str | None
    extra_index_urls: tuple[str, ...]

    def pip_conf(self) -> str:
        lines = ["[global]"]
        if self.cert:
            lines.append("cert = /run/secrets/pip_cert")
        if self.index_url:
            lines.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            lines.append("extra-index-url = " + " ".join(self.extra_index_urls))
        return "\n".join(lines) + "\n"


def pip_settings(env: dict[str, str] | None = None) -> PipSettings:
    """What the host's own pip uses, overridden by HARNESS_PIP_CERT / HARNESS_PIP_INDEX_URL.

    Only http(s) index URLs are passed on: a ``file://`` index means nothing in a container.
    ``HARNESS_PIP_CERT=none`` passes no CA bundle even where the host has one.
    """
    env = dict(os.environ if env is None else env)
    host = _host_pip_config()
    cert_text = env.get("HARNESS_PIP_CERT") or env.get("PIP_CERT") or host.get("cert")
    cert = Path(cert_text) if cert_text and cert_text != "none" else None
    if cert is not None and not cert.is_file():
        raise ImageError(
            f"pip CA bundle {cert} does not exist; set HARNESS_PIP_CERT to a file or 'none'."
        )
    index = env.get("HARNESS_PIP_INDEX_URL") or env.get("PIP_INDEX_URL") or host.get("index-url")
    extra = (env.get("PIP_EXTRA_INDEX_URL") or host.get("extra-index-url") or "").split()
    web = ("http://", "https://")
    return PipSettings(
        cert=cert,
        index_url=index if index and index.startswith(web) else None,
        extra_index_urls=tuple(u for u in extra if u.startswith(web)),
    )


def _host_pip_config() -> dict[str, str]:
    """``pip config list`` as {key: value}; environment entries win over files."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    found: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        scope, _, name = key.rpartition(".")
        rank = 2 if scope == ":env:" else 1
        if name and rank >= found.get(name, (0, ""))[0]:
            found[name] = (rank, value.strip().strip("'\""))
    return {name: value for name, (_, value) in found.items()}


# --- building ----------------------------------------------------------------------------


def _image_id(tag: str) -> str | None:
    try:
        return client().images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def _label(tag: str, name: str) -> str | None:
    try:
        return (client().images.get(tag).labels or {}).get(name)
    except docker.errors.ImageNotFound:
        return None


def inputs_hash(context: Path, args: dict[str, str], extra: Iterable[str] = ()) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(args, sort_keys=True).encode())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]


def build(
    tag: str,
    context: Path,
    log: CommandLog,
    *,
    dockerfile: str = "Dockerfile",
    args: dict[str, str] | None = None,
    progress: Progress = _quiet,
) -> str:
    """Build ``context`` as ``tag`` unless an image with the same inputs exists; return its id."""
    args = args or {}
    base_id = _image_id(args["BASE_IMAGE"]) if "BASE_IMAGE" in args else ""
    wanted = inputs_hash(context, args, [dockerfile, base_id or ""])
    if _label(tag, INPUTS_LABEL) == wanted:
        return _image_id(tag) or ""
    progress(f"building {tag}")
    pip = pip_settings()
    with tempfile.TemporaryDirectory(prefix="harness-build-") as tmp:
        secrets = Path(tmp)
        (secrets / "pip.conf").write_text(pip.pip_conf())
        (secrets / "pip_cert").write_bytes(pip.cert.read_bytes() if pip.cert else b"")
        compose_file = secrets / "build.yaml"
        compose_file.write_text(
            json.dumps(
                {
                    "services": {
                        "image": {
                            "image": tag,
                            "build": {
                                "context": str(context),
                                "dockerfile": dockerfile,
                                "args": args,
                                "labels": {INPUTS_LABEL: wanted},
                                "secrets": ["pip_conf", "pip_cert"],
                            },
                        }
                    },
                    "secrets": {
                        "pip_conf": {"file": str(secrets / "pip.conf")},
                        "pip_cert": {"file": str(secrets / "pip_cert")},
                    },
                }
            )
        )
        try:
            Compose("harness-build", compose_file, log).run("build", "image", timeout=1800)
        except CellError as exc:
            raise ImageError(f"building {tag} failed: {exc}") from exc
    image_id = _image_id(tag)
    if not image_id:
        raise ImageError(f"building {tag} reported success but the image is missing")
    return image_id


def support_images(log: CommandLog, progress: Progress = _quiet) -> dict[str, str]:
    base = ensure_base("bookworm", log, progress)
    tags = {}
    for name, context in SUPPORT_IMAGES.items():
        tag = f"harness-{name}:latest"
        build(tag, context, log, args={"BASE_IMAGE": base}, progress=progress)
        tags[name] = tag
    return tags


# --- HAProxy -----------------------------------------------------------------------------


def haproxy_tag(spec: VersionSpec) -> str:
    if spec.kind == "debian":
        return f"harness-haproxy:{spec.expected}-debian-{spec.value}"
    if spec.kind == "source":
        return f"harness-haproxy:{spec.value}-source"
    if spec.kind == "tarball":
        return f"harness-haproxy:{spec.expected}-custom-{spec.tarball_digest()[:12]}"
    if spec.kind == "git":
        return f"harness-haproxy:{spec.expected or 'unknown'}-git-{spec.git_commit[:12]}"
    return spec.value


# Debian suites that move (haproxy/debian-suite/Dockerfile): the base they are built on,
# the package taken from the suite itself. debootstrap cannot start from experimental.
DEBIAN_BASE_OF = {"sid": "sid", "experimental": "sid"}


def haproxy_image(
    spec: VersionSpec, log: CommandLog, progress: Progress = _quiet, run: str | None = None
) -> HaproxyImage:
    """Build (or find) the image of ``spec`` and ask it ``haproxy -vv``; ``run`` labels
    that one-shot container, so an interrupted run's cleanup finds it too."""
    tag = haproxy_tag(spec)
    if spec.kind == "debian":
        base = ensure_base(DEBIAN_BASE_OF.get(spec.value, spec.value), log, progress)
        if spec.value in DEBIAN_BASE_OF:
            context, args = ROOT / "haproxy" / "debian-suite", {"SUITE": spec.value}
        else:
            context, args = ROOT / "haproxy" / "debian", {}
        build(tag, context, log, args={"BASE_IMAGE": base, **args}, progress=progress)
    elif spec.kind in ("source", "tarball"):
        _build_from_tarball(spec, tag, log, progress)
    elif spec.kind == "git":
        _build_from_git(spec, tag, log, progress)
    elif not _image_id(tag):
        progress(f"pulling {tag} (at most {PULL_TIMEOUT_S} s)")
        why = _pull(tag, log)
        if why is not None:
            raise ImageError(
                f"{spec.text}: image {tag} is not present and cannot be pulled ({why}). "
                "Pull or load it first ('docker load -i ...'), or use a debian:/source: spec."
            )
    vv = _haproxy_vv(tag, log, run)
    return HaproxyImage(spec, tag, _image_id(tag) or "", check_reported(spec, vv), vv)


def _pull(ref: str, log: CommandLog) -> str | None:
    """Pull an image; None when it came, else why not (a registry that never answers
    is bounded by PULL_TIMEOUT_S, not a hang)."""
    try:
        pulled = log.run(["docker", "pull", ref], timeout=PULL_TIMEOUT_S, check=False)
    except CellError as exc:
        return str(exc).splitlines()[0]
    if pulled.returncode == 0:
        return None
    return pulled.stderr.decode(errors="replace").strip()[:300] or f"exit {pulled.returncode}"


def _haproxy_vv(tag: str, log: CommandLog, run: str | None = None) -> str:
    # A signal can leave this container created but never started (`--rm` never applies
    # then): the run label lets the run's cleanup find it.
    labels = ["--label", f"harness.run={run}"] if run else []
    proc = log.run(
        [
            "docker",
            "run",
            "--rm",
            "--label",
            "harness=1",
            *labels,
            "--network",
            "none",
            # as in a cell: an image without the user fails here, before any stack
            *security.docker_run_flags("haproxy"),
            "--entrypoint",
            "haproxy",
            tag,
            "-vv",
        ],
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(
            f"{tag}: 'haproxy -vv' failed: {proc.stderr.decode(errors='replace').strip()[:500]}"
            "\nAn image: spec needs an image with haproxy on its PATH, bash, and a user "
            "named haproxy to run it as (harness/security.py), e.g. image:haproxy:2.6.15."
        )
    return proc.stdout.decode(errors="replace")


def _build_from_tarball(spec: VersionSpec, tag: str, log: CommandLog, progress: Progress) -> None:
    tarball = obtain_tarball(spec.value, progress) if spec.kind == "source" else Path(spec.value)
    # A staging context holds just the Dockerfile and the tarball: the hash covers both.
    context = BUILD_DIR / "haproxy-source" / tag.split(":", 1)[1]
    context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "haproxy" / "source" / "Dockerfile", context / "Dockerfile")
    staged = context / "haproxy.tar.gz"
    if not staged.exists() or staged.stat().st_size != tarball.stat().st_size:
        shutil.copyfile(tarball, staged)
    base = ensure_base("bookworm", log, progress)
    build(tag, context, log, args={"BASE_IMAGE": base}, progress=progress)


def _build_from_git(spec: VersionSpec, tag: str, log: CommandLog, progress: Progress) -> None:
    """One commit of a checkout: ``git archive`` of it staged with haproxy/git/Dockerfile
    (a shared ccache), built with its version, ``-g<sha>`` and commit date as the
    version line's parts. Raises ImageError when the archive or the build fails."""
    sha = spec.git_commit
    context = BUILD_DIR / "haproxy-git" / tag.split(":", 1)[1]
    context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "haproxy" / "git" / "Dockerfile", context / "Dockerfile")
    staged = context / "haproxy.tar.gz"
    if not staged.exists():
        archived = git(spec.git_path, "archive", "--format=tar.gz", "--prefix=haproxy/",
                       "-o", str(staged.with_suffix(".part")), sha, check=False)  # fmt: skip
        if archived.returncode != 0:
            raise ImageError(f"{spec.text}: git archive failed: {archived.stderr.strip()[:300]}")
        staged.with_suffix(".part").rename(staged)
    # %cs: the committer date, YYYY-MM-DD; HAProxy writes YYYY/MM/DD
    date = git(spec.git_path, "log", "-1", "--format=%cs", sha).stdout.strip().replace("-", "/")
    args = {
        "BASE_IMAGE": ensure_base("bookworm", log, progress),
        "HAPROXY_VERSION": spec.expected or "0.0.0",
        "HAPROXY_SUBVERS": f"-g{sha[:8]}",
        "HAPROXY_VERDATE": date if len(date) == 10 else "",
    }
    build(tag, context, log, args=args, progress=progress)


def obtain_tarball(version: str, progress: Progress = _quiet) -> Path:
    """The pinned upstream tarball: a local file in haproxy/tarballs/ wins over any download."""
    entry = catalogue().sources[version]
    local = TARBALL_DIR / f"haproxy-{version}.tar.gz"
    if local.exists():
        _verify(local, entry.sha256, f"local tarball {local}")
        return local
    errors = []
    for url in entry.urls:
        progress(f"downloading {url}")
        partial = local.with_suffix(".part")
        try:
            TARBALL_DIR.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(url, timeout=60) as resp, partial.open("wb") as out:
                shutil.copyfileobj(resp, out)
            _verify(partial, entry.sha256, url)
            partial.rename(local)
            return local
        except (OSError, ImageError) as exc:
            errors.append(f"  {url}: {exc}")
            partial.unlink(missing_ok=True)
    raise ImageError(
        f"source:{version}: no tarball. Tried:\n" + "\n".join(errors) + "\n"
        f"Download haproxy-{version}.tar.gz yourself and drop it into {TARBALL_DIR}/ "
        f"(it must have sha256 {entry.sha256})."
    )


def _verify(path: Path, sha256: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != sha256:
        raise ImageError(
            f"{what} has sha256 {actual}, but the catalogue pins {sha256}. "
            "Remove the file, or fix the catalogue if you are sure of it."
        )


def ensure_images(
    specs: Iterable[VersionSpec],
    log: CommandLog,
    progress: Progress = _quiet,
    run: str | None = None,
) -> ImageSet:
    """The support images and one image per version spec; ``run``: the run they are for
    (labels the one-shot containers that check them)."""
    support = support_images(log, progress)
    haproxy = {}
    for spec in specs:
        if spec.text not in haproxy:
            hx = haproxy[spec.text] = haproxy_image(spec, log, progress, run)
            progress(f"{spec.text}: {hx.tag} reports HAProxy {hx.version}")
    return ImageSet(haproxy, support)
