"""Train and evaluate the ``content_safety`` models: runs ``gateway.tools.train_content_safety``
(kept here so ``python bench/train_content_safety.py [--data data] [--out policies/data]`` still
works; the trainer lives in ``gateway/tools/`` with the other tools that read and write files)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.tools.train_content_safety import main

if __name__ == "__main__":
    raise SystemExit(main())
