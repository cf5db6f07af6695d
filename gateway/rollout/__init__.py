"""Staged rollouts at run time (issue 8): the store-backed flag override map and kill switch
(``overrides``), the rollout state machine (``state``) and its store (``repo``: revision CAS,
controller lease with fencing), the worker statistics a step is judged on (``stats``), setting a
step's percentage (``actuator``: Unleash Admin API or the override), breach items and webhook
(``notify``), transitions shared by API, CLI and controller (``service``), the controller loop
(``controller``), process wiring (``runtime``), the HTTP routes (``api``) and the CLI (``cli``).
"""
