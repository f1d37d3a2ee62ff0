"""The one recipe for a checksum of structured data: SHA-256 of its JSON with sorted keys.

Run fingerprints (curriculum/training/run_dir.py) and the pipeline's cache keys (tasks/caching.py) both use it,
so the same settings give the same hex digest wherever they are hashed. Values JSON cannot hold (paths, dates)
are hashed as their str().
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()
