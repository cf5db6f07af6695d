"""Build of the one compiled module, ``policies._native`` (the guardrail models' featurisation
fast path, ``policies/native.py``); everything else is declared in pyproject.toml.
``optional=True``: without a C compiler the install still succeeds and the numpy reference
serves (a test fails in CI, ``CI=true``, when the module is missing)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "policies._native",
            sources=["policies/_native.c"],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
