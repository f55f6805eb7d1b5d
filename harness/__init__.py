"""The harness: reproducible, Docker-Compose-based benchmarks of HAProxy connection lifecycles."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: templates, Dockerfiles and the catalogue live beside the package.
ROOT = Path(__file__).resolve().parent.parent
