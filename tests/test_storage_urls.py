"""Storage URLs map to the library's configuration, and bad ones say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentlog.adapters.storage import DEFAULT_URL, env_for
from agentlog.domain import StorageURLError


def test_default_store_is_a_sqlite_file_under_dot_agentlog() -> None:
    assert DEFAULT_URL == "sqlite:///.agentlog/agentlog.db"


def test_sqlite_url_uses_the_native_module_by_default(tmp_path: Path) -> None:
    env = env_for(f"sqlite:///{tmp_path}/a.db")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == f"{tmp_path}/a.db"


def test_sqlite_url_can_use_sqlalchemy(tmp_path: Path) -> None:
    env = env_for(f"sqlite:///{tmp_path}/a.db?engine=sqlalchemy")
    assert env["SQLALCHEMY_URL"] == f"sqlite:///{tmp_path}/a.db"


def test_postgres_url_maps_to_connection_settings() -> None:
    env = env_for("postgresql+psycopg://ann:s%40cret@db.local:6543/agents")
    assert {k: v for k, v in env.items() if k.startswith("POSTGRES_")} == {
        "POSTGRES_DBNAME": "agents",
        "POSTGRES_HOST": "db.local",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "ann",
        "POSTGRES_PASSWORD": "s@cret",
    }


def test_compression_and_encryption_come_from_the_library() -> None:
    env = env_for("memory://?compress=zlib", cipher_key="k")
    assert env["COMPRESSOR_TOPIC"] == "eventsourcing.compressor:ZlibCompressor"
    assert (env["CIPHER_TOPIC"], env["CIPHER_KEY"]) == ("eventsourcing.cipher:AESCipher", "k")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://x/y", "use memory://"),
        ("sqlite:///", "sqlite:///relative"),
        ("memory://?engine=rocket", "engine must be"),
        ("memory://?colour=blue", "unknown option"),
        ("memory://?compress=lz4", "compress must be"),
        ("postgresql+psycopg://host", "name the database"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(StorageURLError, match=reason):
        env_for(url)
