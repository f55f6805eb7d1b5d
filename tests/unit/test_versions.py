import tarfile

import pytest

from harness.errors import SpecError
from harness.plan import versions

VV_BOOKWORM = """HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/
Status: long-term supported branch - will stop receiving fixes around Q2 2027.
Build options :
  TARGET  = linux-glibc
"""


@pytest.mark.parametrize(
    ("text", "kind", "expected", "label"),
    [
        ("debian:bullseye", "debian", "2.2.9", "2.2.9 (debian:bullseye)"),
        ("debian:bookworm", "debian", "2.6.12", "2.6.12 (debian:bookworm)"),
        ("debian:trixie", "debian", "3.0.11", "3.0.11 (debian:trixie)"),
        ("source:2.6.15", "source", "2.6.15", "2.6.15 (source)"),
        ("image:haproxy:2.6.15", "image", "2.6.15", "2.6.15 (image:haproxy:2.6.15)"),
        (
            "image:haproxy:2.6.17-bookworm",
            "image",
            "2.6.17",
            "2.6.17 (image:haproxy:2.6.17-bookworm)",
        ),
        ("image:haproxy:lts", "image", None, "? (image:haproxy:lts)"),
        (
            "image:registry.local:5000/haproxy",
            "image",
            None,
            "? (image:registry.local:5000/haproxy)",
        ),
    ],
)
def test_parse_kinds(text, kind, expected, label):
    spec = versions.parse(text)
    assert (spec.kind, spec.expected, spec.label) == (kind, expected, label)
    assert spec.text == text


def test_tarball_needs_existing_file_and_version(tmp_path):
    tree = tmp_path / "haproxy-2.6.15"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")  # parse checks the archive holds a source tree
    tarball = tmp_path / "haproxy-2.6.15-patched.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    spec = versions.parse(f"tarball:{tarball}@2.6.15")
    assert (spec.kind, spec.expected, spec.custom) == ("tarball", "2.6.15", True)
    assert spec.label == "2.6.15 (custom)"
    with pytest.raises(SpecError, match="explicit version"):
        versions.parse(f"tarball:{tarball}")
    with pytest.raises(SpecError, match="does not exist"):
        versions.parse(f"tarball:{tmp_path / 'missing.tar.gz'}@2.6.15")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bookworm", "not a version spec"),
        ("debian:", "not a version spec"),
        ("apt:bookworm", "not a version spec"),
        ("debian:buster", "unknown Debian release 'buster'"),
        ("source:2.6.99", "no pinned tarball for HAProxy '2.6.99'"),
    ],
)
def test_parse_errors_say_what_and_how(text, message):
    with pytest.raises(SpecError, match=message) as err:
        versions.parse(text, where="matrix.yaml: versions[0]")
    assert str(err.value).startswith("matrix.yaml: versions[0]: ")


def test_catalogue_pins_the_published_sha256():
    cat = versions.catalogue()
    assert cat.sources["2.6.15"].sha256.startswith("41f8e1695e92")
    assert cat.sources["2.6.17"].sha256.startswith("be48ee8ff912")
    assert cat.debian == {
        "bullseye": "2.2.9",
        "bookworm": "2.6.12",
        "trixie": "3.0.11",
        "sid": "3.2.26",
        "experimental": "3.4.7",
    }
    for version, entry in cat.sources.items():
        assert entry.urls[0] == (
            f"https://www.haproxy.org/download/{'.'.join(version.split('.')[:2])}"
            f"/src/haproxy-{version}.tar.gz"
        )


def test_reported_version_is_checked():
    assert versions.version_from_vv(VV_BOOKWORM) == "2.6.12"
    assert versions.check_reported(versions.parse("debian:bookworm"), VV_BOOKWORM) == "2.6.12"
    with pytest.raises(SpecError, match=r"reports HAProxy 2\.6\.12 but the spec promises 2\.6\.15"):
        versions.check_reported(versions.parse("source:2.6.15"), VV_BOOKWORM)
    with pytest.raises(SpecError, match="no version line"):
        versions.check_reported(versions.parse("debian:bookworm"), "bash: haproxy: not found")
