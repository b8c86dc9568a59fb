"""What cached results are keyed by: a digest of marlow's own source and the versions of the libraries it
builds on. Light on purpose (no JAX): ``marlow list`` reads its cached table with it before anything heavy
is imported, and :mod:`marlow.runtime.program_cache` keys whole compiled programs with it."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

_digest: str | None = None


def source_digest() -> str:
    """sha256 over the paths and contents of every .py and .yaml file of the marlow package."""
    global _digest
    if _digest is None:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _digest = h.hexdigest()
    return _digest


def versions(packages) -> dict[str, str | None]:
    """The installed version of each package (None where it is not installed)."""
    out = {}
    for package in packages:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out
