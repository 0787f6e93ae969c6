#!/usr/bin/env python3
"""Refresh (or check) the third-party browser files the API serves itself, under api/web/vendor/.

The API documentation pages (/docs, /redoc) and the web UI must work on a machine without internet, so
Swagger UI and ReDoc (``packages``: the docs) and Leaflet, Apache ECharts and axe-core (``ui``: the
grid map, the dashboard charts, the accessibility check of the UI tests) are kept in the repository at
pinned versions. This script is the only thing that writes them: it fetches each pinned npm tarball
with ``npm pack`` (npm verifies it against the pinned ``integrity``), extracts only the files listed
below, and writes ``api/web/vendor/manifest.json`` with the version, licence and the sha256 of every
file. Nothing downloads at run time or in CI.

    python3 scripts/vendor.py           # download the pins, rewrite the files and the manifest
    python3 scripts/vendor.py --check   # offline: the files on disk match the manifest and the pins

To upgrade: change ``version`` and ``integrity`` (``npm view <name>@<version> dist.integrity``) below,
run the script, look at the diff, run tests/api/test_docs_offline.py and tests/e2e/test_ui_b.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "api" / "web" / "vendor"
MANIFEST = VENDOR / "manifest.json"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    integrity: str  # npm's dist.integrity of the tarball
    licence: str  # SPDX id of the package
    files: tuple[str, ...]  # paths inside the tarball's package/ folder; written flat under vendor/<name>/


PINS = (
    Pin(
        name="swagger-ui-dist",
        version="5.35.0",
        integrity="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        licence="Apache-2.0",
        files=(
            "swagger-ui-bundle.js",
            "swagger-ui.css",
            "favicon-32x32.png",
            "LICENSE",
            "NOTICE",
            "swagger-ui-bundle.js.LICENSE.txt",
        ),
    ),
    Pin(
        name="redoc",
        version="2.5.4",
        integrity="sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==",
        licence="MIT",
        files=(
            "bundles/redoc.standalone.js",
            "bundles/redoc.standalone.js.LICENSE.txt",
            "LICENSE",
        ),
    ),
)


#: the web UI's libraries, served under /vendor/<name>/ by the UI (not by /docs): a separate manifest key
UI_PINS = (
    Pin(
        name="leaflet",
        version="1.9.4",
        integrity="sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA==",
        licence="BSD-2-Clause",
        files=("dist/leaflet-src.esm.js", "dist/leaflet.css", "LICENSE"),
    ),
    Pin(
        name="echarts",
        version="6.1.0",
        integrity="sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==",
        licence="Apache-2.0",
        files=("dist/echarts.esm.min.js", "LICENSE", "NOTICE", "licenses/LICENSE-d3"),
    ),
    Pin(
        name="axe-core",
        version="4.14.1",
        integrity="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        licence="MPL-2.0",
        files=("axe.min.js", "LICENSE", "LICENSE-3RD-PARTY.txt"),
    ),
)
#: manifest key → its pins
GROUPS: dict[str, tuple[Pin, ...]] = {"packages": PINS, "ui": UI_PINS}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pack(pin: Pin, workdir: Path) -> Path:
    """The pinned tarball, fetched by npm (which checks it against the registry's integrity)."""
    out = subprocess.run(
        ["npm", "pack", f"{pin.name}@{pin.version}", "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    (info,) = json.loads(out.stdout)
    if info["integrity"] != pin.integrity:
        raise SystemExit(
            f"{pin.name}@{pin.version}: the registry's tarball has integrity {info['integrity']}, "
            f"the pin says {pin.integrity}: refusing to vendor it"
        )
    return workdir / info["filename"]


def _extract(pin: Pin, tarball: Path, dest: Path) -> dict[str, str]:
    """Copy the pin's files (and nothing else) out of the tarball; their sha256 by name."""
    dest.mkdir(parents=True)
    digests: dict[str, str] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for inner in pin.files:
            member = tar.getmember(f"package/{inner}")
            if not member.isfile():
                raise SystemExit(f"{pin.name}: package/{inner} is not a regular file")
            source = tar.extractfile(member)
            assert source is not None
            target = dest / Path(inner).name
            with source, target.open("wb") as fh:
                shutil.copyfileobj(source, fh)
            digests[target.name] = sha256(target)
    return digests


def refresh() -> None:
    groups: dict[str, dict[str, object]] = {}
    every = [pin for pins in GROUPS.values() for pin in pins]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        staged = work / "vendor"
        for key, pins in GROUPS.items():
            packages: dict[str, object] = {}
            for pin in pins:
                tarball = _pack(pin, work)
                digests = _extract(pin, tarball, staged / pin.name)
                packages[pin.name] = {
                    "version": pin.version,
                    "integrity": pin.integrity,
                    "licence": pin.licence,
                    "files": dict(sorted(digests.items())),
                }
            groups[key] = packages
        for pin in every:  # replace each package folder whole: no stale file survives an upgrade
            shutil.rmtree(VENDOR / pin.name, ignore_errors=True)
            VENDOR.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staged / pin.name), VENDOR / pin.name)
    manifest = {
        "about": "written by scripts/vendor.py: files served by the API itself (no CDN); do not edit by hand",
        **groups,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {MANIFEST.relative_to(ROOT)}\n")


def check() -> list[str]:
    """Problems with the files on disk (empty when they match the manifest and the pins)."""
    problems: list[str] = []
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    for key, pins in GROUPS.items():
        problems += _check_group(manifest.get(key, {}), pins)
    return problems


def _check_group(packages: dict[str, dict[str, object]], pins: tuple[Pin, ...]) -> list[str]:
    problems: list[str] = []
    if sorted(packages) != sorted(p.name for p in pins):
        problems.append(f"manifest lists {sorted(packages)}, the pins {sorted(p.name for p in pins)}")
    for pin in pins:
        entry: dict[str, object] = packages.get(pin.name, {})
        files = entry.get("files", {})
        assert isinstance(files, dict)
        if (entry.get("version"), entry.get("integrity"), entry.get("licence")) != (
            pin.version,
            pin.integrity,
            pin.licence,
        ):
            problems.append(
                f"{pin.name}: manifest has {entry.get('version')}, the pin {pin.version}: run the script"
            )
        expected = sorted(Path(f).name for f in pin.files)
        if sorted(files) != expected:
            problems.append(f"{pin.name}: manifest files {sorted(files)}, expected {expected}")
        if not any(name.startswith(("LICENSE", "LICENCE")) for name in files):
            problems.append(f"{pin.name}: no licence file vendored")
        on_disk = (
            sorted(p.name for p in (VENDOR / pin.name).iterdir()) if (VENDOR / pin.name).is_dir() else []
        )
        if on_disk != expected:
            problems.append(f"{pin.name}: files on disk {on_disk}, expected {expected}")
        for name, digest in files.items():
            path = VENDOR / pin.name / name
            if path.is_file() and sha256(path) != digest:
                problems.append(f"{pin.name}/{name}: sha256 differs from the manifest")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="verify the files against the manifest (offline)"
    )
    args = parser.parse_args()
    if args.check:
        problems = check()
        for problem in problems:
            sys.stderr.write(problem + "\n")
        return 1 if problems else 0
    refresh()
    return 0


if __name__ == "__main__":
    sys.exit(main())
