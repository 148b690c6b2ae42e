"""Decide: the method's math as pure functions over numpy arrays and polars frames, no I/O.

``priors`` (empirical-Bayes Beta priors and posteriors), ``sampling`` (Thompson sampling),
``action_space`` (the action sets of a run), ``eligibility`` (the guardrails) and
``matching`` (hour, send-or-wait, message, propensity).

The loops over users are compiled by numba on their first call (a few seconds) and cached
on disk: in ``NUMBA_CACHE_DIR`` if it is set, else beside these modules (``__pycache__``),
else in numba's per-user cache; where none of those is writable (a read-only install, a
worker without a home), in ``<temp dir>/nudgeflow-numba-<uid>``.
"""

import os
import tempfile
from pathlib import Path


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _cache_dir() -> None:
    """Point numba's cache to a writable directory when its own choices are not."""
    from numba.core import config
    from numba.misc.appdirs import AppDirs

    if config.CACHE_DIR or _writable(Path(__file__).parent / "__pycache__"):
        return
    if _writable(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)):
        return
    config.CACHE_DIR = str(Path(tempfile.gettempdir()) / f"nudgeflow-numba-{os.getuid()}")


_cache_dir()
