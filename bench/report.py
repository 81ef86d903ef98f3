"""Writing a bench's results: the payload plus the machine it ran on, as indented JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """What the numbers depend on: cores, Python, and how busy the machine was."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_1m": os.getloadavg()[0],
    }


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """`payload` with the machine's description first, to `path`; says where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"results: {path}")
