"""config.py is where the environment is read and written: the variables serve hands its workers
keep the names Settings reads them by, and a route's upstream key comes from the variable it names."""

from __future__ import annotations

import os

import pytest

from tokens_forge.config import Settings, export_for_workers, exported, upstream_secret

WORKER_VARIABLES = {"config": "TF_CONFIG", "database_url": "TF_DATABASE_URL",
                    "db_connection_budget": "TF_DB_CONNECTION_BUDGET", "workers": "TF_WORKERS",
                    "mock_upstream": "TF_MOCK_UPSTREAM", "admin_token": "TF_ADMIN_TOKEN",
                    "prometheus_multiproc_dir": "PROMETHEUS_MULTIPROC_DIR"}


@pytest.fixture
def clean_env():
    """None of the variables set, and afterwards the environment as it was (export_for_workers writes
    os.environ itself: nothing it sets may reach the rest of the suite)."""
    saved = {name: os.environ.pop(name) for name in WORKER_VARIABLES.values() if name in os.environ}
    try:
        yield
    finally:
        for name in WORKER_VARIABLES.values():
            os.environ.pop(name, None)
        os.environ.update(saved)


def test_exported_settings_are_what_a_worker_reads(clean_env, tmp_path):
    export_for_workers(database_url="postgresql://u@h/db", db_connection_budget=40, workers=4, mock_upstream=1,
                       admin_token="adm-x", config=tmp_path / "forge.yaml")
    assert {s: os.environ.get(v) for s, v in WORKER_VARIABLES.items() if s != "prometheus_multiproc_dir"} == {
        "config": str(tmp_path / "forge.yaml"), "database_url": "postgresql://u@h/db", "db_connection_budget": "40",
        "workers": "4", "mock_upstream": "1", "admin_token": "adm-x"}
    settings = Settings(_env_file=None)
    assert (settings.database_url, settings.db_connection_budget, settings.workers, settings.mock_upstream,
            settings.admin_token, settings.config) == ("postgresql://u@h/db", 40, 4, True, "adm-x",
                                                       tmp_path / "forge.yaml")
    assert exported("admin_token") == "adm-x"


def test_an_alias_setting_is_exported_under_its_documented_name(clean_env):
    export_for_workers(prometheus_multiproc_dir="/tmp/m")
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/m" and exported("prometheus_multiproc_dir") == "/tmp/m"


def test_an_unknown_setting_is_refused(clean_env):
    with pytest.raises(KeyError):
        export_for_workers(no_such_setting=1)


def test_upstream_secret_reads_the_named_variable(monkeypatch):
    monkeypatch.setenv("TF_TEST_UPSTREAM_KEY", "sk-upstream-secret")
    monkeypatch.delenv("TF_TEST_UNSET_KEY", raising=False)
    assert upstream_secret("TF_TEST_UPSTREAM_KEY") == "sk-upstream-secret"
    assert upstream_secret("TF_TEST_UNSET_KEY") is None
