"""The compiled fast path of the guardrail models' featurisation (``policies._native``, built
from ``policies/_native.c`` by ``setup.py`` at ``pip install -e .``).

What it computes, each exactly as the numpy reference that stays the definition (the equivalence
test, ``tests/policies/test_native_equivalence.py``, runs both on thousands of real texts):

- ``prompt_injection`` (``injection_hashed.HashedTextModel``): the character 3-5-gram and word
  1-2-gram buckets (``injection_hashed._all_buckets``) and the ``(1 + ln tf) * idf``,
  L2-normalised dot with the weight table (``_weighted_dot``), in one call per view;
- the second stage's tree walk (``injection_features.BoostedStage.decision``);
- ``content_safety`` (``content_safety_model.ContentSafetyModel``): the hashed word 1-2-gram and
  char_wb 2-5-gram columns (``content_features.block_columns``) and each block's sums of the
  model table;
- the binary-blob pre-check of ``policies.decoding.blobs.mask_binary``.

Buckets and columns are bit-identical; sums agree to float rounding (the C code adds in index
order, numpy pairwise): |logit difference| < 1e-9 on the shipped models.

Without the module (no C compiler at install, or a worktree where it was not built) the numpy
reference serves, and one warning is logged; ``tests/policies/test_native_equivalence.py`` fails
in CI (``CI=true``) when it is missing, so the fast path cannot silently rot. A module built from
an older ``_native.c`` (``VERSION`` differs) is not used either: rebuild with
``pip install -e .`` or ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

__all__ = ["VERSION", "module", "probe"]

VERSION = 2
"""The ``NATIVE_VERSION`` of ``policies/_native.c`` this Python code calls."""

_log = logging.getLogger(__name__)
_loaded: list[ModuleType | None] = []


def probe() -> ModuleType | None:
    """Import ``policies._native`` now (no caching): the module, or ``None`` when it is missing
    or was built from another version of the source (``VERSION``). Never raises."""
    try:
        mod = importlib.import_module("policies._native")
    except ImportError as exc:
        _log.warning(
            "policies._native is not built (%s): the guardrail models use the slower numpy code; "
            "run `pip install -e .` (or `python setup.py build_ext --inplace`)",
            exc,
        )
        return None
    if getattr(mod, "VERSION", None) != VERSION:
        _log.warning(
            "policies._native is version %s, this code needs %s: using the slower numpy code; "
            "rebuild it with `pip install -e .`",
            getattr(mod, "VERSION", None),
            VERSION,
        )
        return None
    return mod


def module() -> ModuleType | None:
    """The compiled module, imported (and any warning logged) once per process; ``None`` when
    it cannot be used (``probe``)."""
    if not _loaded:
        _loaded.append(probe())
    return _loaded[0]
