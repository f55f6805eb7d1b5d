import pytest

from harness.errors import ImageError
from harness.stack import images


@pytest.fixture
def no_host_config(monkeypatch):
    monkeypatch.setattr(images, "_host_pip_config", lambda: {})


def test_nothing_passed_where_the_host_has_nothing(no_host_config):
    pip = images.pip_settings({})
    assert pip == images.PipSettings(None, None, ())
    assert pip.pip_conf() == "[global]\n"


def test_host_settings_pass_through_and_file_indexes_are_dropped(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.crt"
    bundle.write_text("---")
    monkeypatch.setattr(
        images,
        "_host_pip_config",
        lambda: {
            "cert": str(bundle),
            "extra-index-url": "file:///opt/pypi/simple https://mirror.example/simple",
        },
    )
    pip = images.pip_settings({})
    assert pip.cert == bundle
    assert pip.extra_index_urls == ("https://mirror.example/simple",)
    conf = pip.pip_conf()
    assert "cert = /run/secrets/pip_cert" in conf
    assert "file://" not in conf


def test_explicit_settings_override(no_host_config, tmp_path):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("---")
    pip = images.pip_settings(
        {"HARNESS_PIP_CERT": str(bundle), "HARNESS_PIP_INDEX_URL": "https://pypi.corp/simple"}
    )
    assert (pip.cert, pip.index_url) == (bundle, "https://pypi.corp/simple")
    assert images.pip_settings({"HARNESS_PIP_CERT": "none", "PIP_CERT": str(bundle)}).cert is None
    with pytest.raises(ImageError, match="does not exist"):
        images.pip_settings({"HARNESS_PIP_CERT": str(tmp_path / "missing.pem")})


def test_real_host_pip_config_is_read():
    # Whatever this machine has, reading it must not fail and must give str values.
    assert all(isinstance(v, str) for v in images._host_pip_config().values())
