"""The model registry convention DVC reads (``dvc artifacts get``, Studio, GTO): git tags
``<artifact>@<version>`` register a version, ``<artifact>#<stage>#<n>`` assign it to a stage."""

from __future__ import annotations

import re
import subprocess

from componentx.errors import UserError


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def register(artifact: str, version: str | None, stage: str | None) -> list[str]:
    """Tag HEAD: a version (``v1.2.3``) and/or a stage for the artifact; returns the tags.

    HEAD must hold the artifact as it is in the workspace (``dvc.lock`` committed)."""
    if _git("status", "--porcelain", "--", "dvc.lock").strip():
        raise UserError("dvc.lock has uncommitted changes: commit the run first, so the tag "
                         "points at the bundle you promote")
    tags = []
    if version:
        if not re.fullmatch(r"v\d+\.\d+\.\d+", version):
            raise UserError(f"--version must look like v1.2.3, got {version!r}")
        tags.append(f"{artifact}@{version}")
    if stage:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", stage):
            raise UserError(f"--stage must be lowercase letters, digits and -, got {stage!r}")
        earlier = _git("tag", "--list", f"{artifact}#{stage}#*").split()
        tags.append(f"{artifact}#{stage}#{len(earlier) + 1}")
    for tag in tags:
        _git("tag", "-a", tag, "-m", f"componentx promote: {tag}")
    return tags
