"""docker-compose.yml runs the emulator the lock installs: a Docker user's moto never drifts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _locked_version(name: str) -> str:
    match = re.search(rf"^{name}==([^ \\\n]+)", (ROOT / "requirements/dev.txt").read_text(), re.M)
    assert match, f"{name} is not in requirements/dev.txt"
    return match.group(1)


def test_the_moto_image_is_the_locked_moto_version() -> None:
    """motoserver/moto is pinned to the version requirements/dev.txt installs, never :latest."""
    images = re.findall(r"^\s*image:\s*(\S+)", (ROOT / "docker-compose.yml").read_text(), re.M)
    moto = [image for image in images if image.startswith("motoserver/moto")]
    assert moto == [f"motoserver/moto:{_locked_version('moto')}"]


def test_the_opensearch_image_is_the_version_services_sh_runs() -> None:
    """The OpenSearch image and scripts/services.sh's OPENSEARCH_VERSION are the same."""
    script = (ROOT / "scripts/services.sh").read_text()
    version = re.search(r'^OPENSEARCH_VERSION="([^"]+)"', script, re.M)
    assert version
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"image: opensearchproject/opensearch:{version.group(1)}\n" in compose
