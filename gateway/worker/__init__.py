"""The detector worker, in three parts:

- ``consumer``: the consumer-group loop (read, reclaim, score, apply, acknowledge);
- ``read_model``: what ``GET /v1/detectors`` reads of the state the workers keep;
- ``run``: one worker process (options, connection, signals); its command line is
  ``rollguard worker`` in ``gateway.cli``.

``entries`` parses stream entries; ``exemplars`` puts exemplar records in anomaly bundles.
"""

from gateway.worker.consumer import DetectorWorker, WorkerOptions, WorkerStats
from gateway.worker.run import run_worker, stats_json, worker_options

__all__ = ["DetectorWorker", "WorkerOptions", "WorkerStats", "run_worker", "stats_json", "worker_options"]
