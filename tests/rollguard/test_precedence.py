"""Settings precedence, declared once in ``RollguardSettings.settings_customise_sources``: command-line
options > ``ROLLGUARD_*`` environment > the YAML file > defaults, merged field by field; the typed
``review`` and ``detectors`` sections follow the same order and are validated at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollguard.detector_settings import DetectorSettings
from rollguard.errors import ConfigError
from rollguard.review_settings import ReviewSettings
from rollguard.settings import config_source, load_settings

FILE = """
gateway: {host: 127.0.0.2, port: 7000, workers: 2}
review: {k_overlap: 2, lease_s: 120}
detectors: {reference_size: 100, floors: {psi: 0.3}, worker: {batch: 10}}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "ROLLGUARD_CONFIG",
        "ROLLGUARD_GATEWAY__PORT",
        "ROLLGUARD_GATEWAY__HOST",
        "ROLLGUARD_DATA_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "rollguard.yaml"
    path.write_text(FILE)
    return path


def test_defaults_when_nothing_is_given(config: Path) -> None:
    s = load_settings(None)
    assert (s.gateway.host, s.gateway.port, s.gateway.workers) == ("127.0.0.1", 8080, 1)
    assert s.review is None
    assert s.detectors == DetectorSettings()
    assert s.data_dir is None


def test_the_file_beats_the_defaults(config: Path) -> None:
    s = load_settings(config)
    assert (s.gateway.host, s.gateway.port, s.gateway.workers) == ("127.0.0.2", 7000, 2)
    assert isinstance(s.review, ReviewSettings) and s.review.k_overlap == 2 and s.review.lease_s == 120


def test_the_environment_beats_the_file_field_by_field(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLGUARD_GATEWAY__PORT", "9001")
    monkeypatch.setenv("ROLLGUARD_REVIEW__LEASE_S", "60")
    s = load_settings(config)
    assert s.gateway.port == 9001
    assert s.gateway.host == "127.0.0.2" and s.gateway.workers == 2  # the rest of the section stays
    assert s.review is not None and s.review.lease_s == 60 and s.review.k_overlap == 2


def test_the_command_line_beats_the_environment_and_the_file(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGUARD_GATEWAY__PORT", "9001")
    monkeypatch.setenv("ROLLGUARD_GATEWAY__HOST", "127.0.0.3")
    s = load_settings(config, cli={"gateway": {"port": 9100}})
    assert s.gateway.port == 9100  # command line
    assert s.gateway.host == "127.0.0.3"  # environment
    assert s.gateway.workers == 2  # file


def test_the_command_line_beats_the_defaults_without_a_file(config: Path) -> None:
    s = load_settings(None, cli={"gateway": {"workers": 3}})
    assert s.gateway.workers == 3 and s.gateway.port == 8080


def test_rollguard_config_names_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_source(None) == "environment"
    monkeypatch.setenv("ROLLGUARD_CONFIG", str(config))
    assert config_source(None) == str(config)
    assert load_settings(None).gateway.port == 7000
    assert config_source(Path("other.yaml")) == "other.yaml"  # an explicit path wins


def test_data_dir_is_read_from_the_environment_by_the_settings(
    config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROLLGUARD_DATA_DIR", str(tmp_path))
    assert load_settings(config).data_dir == tmp_path


def test_detectors_section_is_typed_and_split_for_its_users(config: Path) -> None:
    d = load_settings(config).detectors
    assert d.engine() == {"reference_size": 100, "floors": {"psi": 0.3}, "alerts": {}}
    assert d.worker_options() == {"batch": 10}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("detectors: {bogus_knob: 3}\n", "detectors.bogus_knob"),
        ("detectors: {floors: {psi: high}}\n", "detectors.floors.psi"),
        ("detectors: {worker: {batch: many}}\n", "detectors.worker.batch"),
        ("review: {k_overlap: 0}\n", "review.k_overlap"),
        ("review: {queues: [{name: 'a:b'}]}\n", "review.queues.0.name"),
    ],
)
def test_bad_sections_fail_at_load_naming_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert exc.value.field == field
    assert exc.value.source == str(path)


def test_loading_does_not_change_the_environment(config: Path) -> None:
    import os

    before = dict(os.environ)
    load_settings(config, cli={"gateway": {"host": "127.0.0.9"}})
    assert dict(os.environ) == before


def test_an_empty_review_section_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("review: {}\n")
    assert load_settings(path).review is None


@pytest.mark.integration
def test_serve_takes_the_port_from_the_command_line_then_the_environment_then_the_file(
    tmp_path: Path,
) -> None:
    """Real ``rollguard serve`` processes against a busy port: the layer that names the busy port
    is the one serve binds (exit 3 at once, naming it), whatever the lower layers say."""
    import os
    import socket
    import subprocess
    import sys

    from tests.servers import free_port

    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "rollguard.yaml"

    def serve(file_port: int, env_port: int | None, *args: str) -> subprocess.CompletedProcess[str]:
        path.write_text(f"gateway: {{port: {file_port}}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
        env["PYTHONPATH"] = str(repo)
        if env_port is not None:
            env["ROLLGUARD_GATEWAY__PORT"] = str(env_port)
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "-c", str(path), *args]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = int(sock.getsockname()[1])
        for proc in (
            serve(free_port(), free_port(), "--port", str(busy)),  # the command line wins
            serve(free_port(), busy),  # then the environment
            serve(busy, None),  # then the file
        ):
            assert proc.returncode == 3, proc.stderr[-2000:]
            assert f"error: port {busy} on 127.0.0.1 is in use" in proc.stderr
    assert not (tmp_path / "var").exists()
