"""The multi-process supervisor of ``rollguard serve --workers N``: uvicorn's ``Multiprocess``
with one change, SIGHUP.

uvicorn answers SIGHUP by replacing every worker with a new process and waiting for it to become
ready; a rollguard worker needs several seconds to start (models, store, flags), longer than
uvicorn's health-check wait, so the restart was aborted ("New child process ... was not ready in
time") and the old flags stayed. Rollguard's SIGHUP means "re-read the flags", which every worker
can do in place (``Flags.reload``, installed by the app lifespan): the parent forwards the signal
to each live worker instead of restarting them. No request is dropped and no state is lost.
"""

from __future__ import annotations

import logging
import os
import signal

from uvicorn.supervisors import Multiprocess

log = logging.getLogger("rollguard.gateway")


class ReloadingMultiprocess(Multiprocess):
    """``Multiprocess`` whose SIGHUP reloads the flags of every worker in place."""

    def handle_hup(self) -> None:
        sent = 0
        for process in self.processes:
            pid = process.pid
            if pid is None or not process.process.is_alive():
                continue
            try:
                os.kill(pid, signal.SIGHUP)
                sent += 1
            except ProcessLookupError:
                continue
        log.info("SIGHUP: asked %d worker(s) to reload their flags", sent)
