"""Train the shipped ``prompt_injection`` model (kept for old notes and scripts): the training now
lives in ``gateway.tools.train_injection`` (shipped data plus the template rows of
``gateway.tools.injection_templates``), the same as ``rollguard train prompt-injection``.

Usage: ``PYTHONPATH=. python bench/train_prompt_injection_v2.py [--out policies/data] [--seed 0]``.
"""

from __future__ import annotations

from gateway.tools.train_injection import main

if __name__ == "__main__":
    raise SystemExit(main())
