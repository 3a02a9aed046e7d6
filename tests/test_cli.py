"""The omnicanal command, run as a user would run it."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def _run(
    args: list[str], tmp_path: Path, *, input_text: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "OMNICANAL_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "omnicanal", *args],
        capture_output=True,
        text=True,
        input=input_text,
        env=environment,
        timeout=120,
        check=False,
    )


def test_migrate_then_create_user_and_api_key(tmp_path: Path) -> None:
    assert _run(["migrate"], tmp_path).returncode == 0
    created = _run(
        ["user", "create", "--email", "Ana@Example.com", "--role", "supervisor"],
        tmp_path,
        input_text="a-good-password\na-good-password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "a-good-password" not in created.stdout + created.stderr
    key = _run(["apikey", "create", "--role", "agent", "--name", "web shop"], tmp_path)
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().startswith("oc_") and len(key.stdout.strip().splitlines()) == 1


def test_wrong_input_gets_a_clear_message_and_a_nonzero_exit(tmp_path: Path) -> None:
    bad_role = _run(["apikey", "create", "--role", "wizard", "--name", "x"], tmp_path)
    assert bad_role.returncode != 0 and "unknown role" in bad_role.stderr
    short = _run(
        ["user", "create", "--email", "a@example.com", "--role", "agent"], tmp_path, input_text="short\nshort\n"
    )
    assert short.returncode != 0 and "at least" in short.stderr


def test_production_refuses_the_default_secret(tmp_path: Path) -> None:
    result = _run(["migrate"], tmp_path, OMNICANAL_ENVIRONMENT="production")
    assert result.returncode == 2 and "OMNICANAL_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_demo_loads_sample_data_once(tmp_path: Path, backend: str) -> None:
    first = _run(["demo", "--no-serve"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "40 customers" in first.stderr and "oc_" in first.stderr
    with sqlite3.connect(tmp_path / "cli.db") as demo:
        # Nerea wrote by SMS and by email as two customers; a web chat message merged them: one thread of three
        ((threads, said),) = demo.execute(
            "SELECT count(DISTINCT c.id), count(m.id) FROM conversations c JOIN messages m ON m.conversation_id = c.id "
            "WHERE m.external_id LIKE 'demo-join-%'"
        ).fetchall()
        assert (threads, said) == (1, 3)
    again = _run(["demo", "--no-serve"], tmp_path)
    assert again.returncode == 0 and "already present" in again.stderr


def test_several_serving_processes_need_a_database_they_can_share(tmp_path: Path) -> None:
    refused = _run(["serve", "--workers", "2"], tmp_path, OMNICANAL_DATABASE_URL="sqlite:///:memory:")
    assert refused.returncode == 2
    assert "--workers needs a database file or PostgreSQL" in refused.stderr
    assert _run(["serve", "--workers", "0"], tmp_path).returncode == 2  # typer: at least 1
