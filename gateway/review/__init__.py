"""Human review: escalation into review queues, claims (leases), verdicts, the reviewer console,
agreement (``detectors.agreement``) and preference-data export (issue 4; docs/review.md).

Public entry points:

- ``gateway.review.api.create_review_router(settings, redis) -> APIRouter`` (console under
  ``/review``, JSON API under ``/v1/review``); ``router.review_service`` is the ``ReviewService``.
- ``gateway.review.service.ReviewService``: ``escalate_interaction(record)``,
  ``escalate_anomaly(bundle)``, ``start()`` / ``aclose()``.
- ``gateway.review.export.export_preferences(redis, fmt, out)`` and ``export_from_settings``.
- ``gateway.review.config.ReviewSettings`` / ``parse_review_settings``.
- ``gateway.review.demo.demo_review_config()`` for ``rollguard demo``.
"""
