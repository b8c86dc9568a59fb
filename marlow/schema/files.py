"""Where the YAML defaults live (``marlow/conf``) and how one file is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from marlow.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (``{}`` for a missing or empty file); ConfigError if it holds anything
    else."""
    if not path.exists():
        return {}
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    return data
