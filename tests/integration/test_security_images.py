"""No CA bundle and no pip credential in any image the harness builds, on the real engine.

Every build is handed the pip secrets (harness/stack/images.py); clients/Dockerfile is the one
that mounts them (``RUN --mount=type=secret``). BuildKit keeps a mounted secret out of
every layer: these checks hold each built image to that. Containers started here are
``--rm``, ``--network none`` and labelled ``harness=1``, like the harness's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker

from harness.stack import images

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)\n-----END CERTIFICATE-----", re.S)
CREDENTIAL_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#\"']+@")
# Where the secrets were mounted during the build, and where pip looks for a config.
SECRET_PATHS = (
    "/etc/pip.conf",
    "/run/secrets/pip_conf",
    "/run/secrets/pip_cert",
    "/root/.pip/pip.conf",
    "/root/.config/pip/pip.conf",
    "/opt/locust/pip.conf",
)
# What a leaked pip.conf would hold (images.PipSettings.pip_conf), whatever its path.
PIP_CONF_MARK = "/run/secrets/pip_cert"
SCANNED = "/etc /opt /root /home /tmp /usr/local /var/lib"

FS_CHECK = f"""
for p in {" ".join(SECRET_PATHS)}; do [ -e "$p" ] && echo "PRESENT $p"; done
ls -A /run/secrets 2>/dev/null | sed 's/^/IN-RUN-SECRETS /'
printf '%s\\n' '{PIP_CONF_MARK}' "$NEEDLES" | grep -v '^$' > /needles.txt
grep -rlsF -f /needles.txt {SCANNED} 2>/dev/null | sed 's/^/HOLDS /'
true
"""


def _built(dc: docker.DockerClient) -> list[str]:
    """Every tagged image the harness built or imported (they carry harness.inputs)."""
    found = dc.images.list(filters={"label": images.INPUTS_LABEL})
    return sorted(tag for image in found for tag in image.tags)


def _sh(dc: docker.DockerClient, tag: str, script: str, env: dict[str, str] | None = None) -> str:
    return dc.containers.run(
        tag,
        entrypoint=["sh", "-c", script],
        environment=env or {},
        remove=True,
        labels={"harness": "1"},
        network_mode="none",
    ).decode(errors="replace")


def _blocks(text: str) -> set[str]:
    return set(PEM.findall(text))


def _private_ca_lines(dc: docker.DockerClient) -> list[str]:
    """A body line of each certificate pip trusts on the host that no public bundle has
    (a TLS-intercepting proxy's CA): its presence in an image could only be a leak. The
    public ones (Debian's bundle, certifi's) are in images legitimately."""
    host: set[str] = set()
    settings = images.pip_settings()
    for bundle in {CA_BUNDLE, settings.cert}:
        if bundle and bundle.is_file():
            host |= _blocks(bundle.read_text(errors="replace"))
    public = _blocks(
        _sh(
            dc,
            "harness-client:latest",
            "cat /etc/ssl/certs/ca-certificates.crt $(find /opt -name cacert.pem)",
        )
    )
    assert len(public) > 100  # the client's own bundles were read
    return sorted(lines[len(lines) // 2] for lines in (b.splitlines() for b in host - public))


def _credentials() -> list[str]:
    """user:password@host (or token@host) of every index URL pip is given on the host."""
    config = images._host_pip_config()
    urls = [os.environ.get(k, "") for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")]
    urls += [os.environ.get("HARNESS_PIP_INDEX_URL", "")]
    urls += [config.get(k, "") for k in ("index-url", "extra-index-url", "find-links")]
    found = []
    for url in " ".join(urls).split():
        userinfo, at, host = urlsplit(url).netloc.rpartition("@")
        if at:
            found.append(f"{userinfo}@{host}")
    return found


def _metadata_problems(
    tag: str, history: list[dict[str, Any]], config: dict[str, Any]
) -> list[str]:
    """The layer commands, environment and labels: no certificate, no credentials."""
    problems = []
    for layer in history:
        text = f"{layer.get('CreatedBy', '')} {layer.get('Comment', '')}"
        if "BEGIN CERTIFICATE" in text:
            problems.append(f"{tag}: a layer's command holds a certificate")
        problems += [f"{tag}: layer command has {m}" for m in CREDENTIAL_URL.findall(text)]
    for entry in config.get("Env") or []:
        if entry.startswith("PIP_") or CREDENTIAL_URL.search(entry):
            problems.append(f"{tag}: ENV {entry.split('=', 1)[0]}")
    for key, value in (config.get("Labels") or {}).items():
        if CREDENTIAL_URL.search(str(value)):
            problems.append(f"{tag}: label {key} holds a URL with credentials")
    return problems


def _image_problems(dc: docker.DockerClient, tag: str, needles: list[str]) -> list[str]:
    image = dc.images.get(tag)
    problems = _metadata_problems(tag, image.history(), image.attrs.get("Config") or {})
    out = _sh(dc, tag, FS_CHECK, {"NEEDLES": "\n".join(needles)})
    problems += [f"{tag}: {line}" for line in out.splitlines() if line.strip()]
    return problems


def test_client_image_used_the_pip_secrets_and_kept_none(docker_engine) -> None:
    image = docker_engine.images.get("harness-client:latest")
    history = " ".join(str(layer.get("CreatedBy", "")) for layer in image.history())
    assert "pip install" in history  # pip ran at build time, with the secrets mounted
    needles = _private_ca_lines(docker_engine) + _credentials()
    assert _image_problems(docker_engine, "harness-client:latest", needles) == []
    # pip inside the image has no configuration left at all (index, cert)
    config = _sh(docker_engine, "harness-client:latest", "/opt/locust/bin/pip config list")
    assert config.strip() == ""


def test_no_image_the_harness_builds_holds_a_ca_or_credential(docker_engine) -> None:
    tags = _built(docker_engine)
    support = {f"harness-{n}:latest" for n in images.SUPPORT_IMAGES}
    assert support <= set(tags), tags
    assert any(t.startswith("harness-haproxy:") for t in tags), tags
    needles = _private_ca_lines(docker_engine) + _credentials()
    problems = [p for tag in tags for p in _image_problems(docker_engine, tag, needles)]
    assert problems == []


def test_image_checks_see_a_planted_secret(docker_engine) -> None:
    # The same filesystem check, after planting what a leaky build would have left.
    needle = "MIIplantedcertificatebodyline0123456789abcdefghijklmnopqrstuvwxyz"
    plant = (
        "mkdir -p /run/secrets /opt/leak && printf 'cert = /run/secrets/pip_cert\\n' > "
        f"/etc/pip.conf && touch /run/secrets/pip_cert && echo {needle} > /opt/leak/ca.pem"
    )
    out = _sh(docker_engine, "harness-backend:latest", plant + "\n" + FS_CHECK, {"NEEDLES": needle})
    assert set(out.split("\n")) >= {
        "PRESENT /etc/pip.conf",
        "PRESENT /run/secrets/pip_cert",
        "IN-RUN-SECRETS pip_cert",
        "HOLDS /etc/pip.conf",
        "HOLDS /opt/leak/ca.pem",
    }
    history = [{"CreatedBy": "RUN pip install --index-url https://al:s3cret@pypi.corp/simple x"}]
    config = {"Env": ["PIP_CERT=/ca.pem"], "Labels": {"src": "https://tok@git.corp/r"}}
    assert _metadata_problems("x", history, config) == [
        "x: layer command has https://al:s3cret@",
        "x: ENV PIP_CERT",
        "x: label src holds a URL with credentials",
    ]
