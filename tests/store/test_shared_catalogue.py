"""The shared catalogue's own parts: the SQL translation, the schema version and its migrations, and the errors
for a database that cannot be reached (a real PostgreSQL from cluster_fixtures)."""

from __future__ import annotations

import psycopg
import pytest

from voicebank import errors
from voicebank.store import catalogue, pgschema
from voicebank.store.pgcatalogue import PgCatalogue, redact, schema_version
from voicebank.store.pgsql import Row, translate
from voicebank.store.shared import open_store


def test_the_store_sql_is_translated():
    assert translate("SELECT * FROM voices WHERE name = ? AND x LIKE '%?'")[0] == \
        "SELECT * FROM voices WHERE name = %s AND x LIKE '%%?'"
    sql, returns_id = translate("INSERT INTO voices (name, mode) VALUES (?, ?)")
    assert sql.endswith("RETURNING id") and returns_id
    assert translate("INSERT INTO voices (name) VALUES (?)", many=True) == ("INSERT INTO voices (name) VALUES (%s)",
                                                                          False)
    sql, _ = translate("INSERT OR REPLACE INTO voice_files (voice_id, role, variant, blob) VALUES (?, ?, ?, ?)")
    assert sql.startswith("INSERT INTO voice_files") and sql.endswith(
        "ON CONFLICT (voice_id, role, variant) DO UPDATE SET blob = EXCLUDED.blob")
    assert translate("INSERT OR IGNORE INTO tags (voice_id, tag) VALUES (?, ?)")[0].endswith("ON CONFLICT DO NOTHING")
    assert translate("PRAGMA user_version")[0] == "SELECT version FROM voicebank_meta"
    assert translate("PRAGMA user_version = 3")[0] == "UPDATE voicebank_meta SET version = 3"
    with pytest.raises(ValueError, match="no PostgreSQL equivalent"):
        translate("PRAGMA quick_check")


def test_rows_are_read_by_name_and_by_position():
    row = Row(("id", "name"), {"id": 0, "name": 1}, (7, "alice"))
    assert row["name"] == row[1] == "alice" and tuple(row) == (7, "alice") and row.keys() == ["id", "name"]
    voice_id, name = row
    assert (voice_id, name) == (7, "alice")
    with pytest.raises(IndexError):
        row["nope"]


def test_the_schema_versions_match_the_embedded_store():
    assert schema_version() == catalogue.schema_version() == len(pgschema.MIGRATIONS)


def test_migrations_run_once_keep_data_and_a_newer_schema_is_refused(shared_location, monkeypatch):
    store = open_store(shared_location.catalogue, blobs=shared_location.blobs)
    assert store.catalogue.user_version() == 2
    with store.catalogue.write() as conn:
        conn.execute("INSERT INTO voices (name, mode, variant, added_at) VALUES ('kept', 'embedding', 'english', 'x')")
    store.close()
    original = pgschema.MIGRATIONS
    v3 = ("ALTER TABLE voices ADD COLUMN rating INTEGER NOT NULL DEFAULT 3",)
    monkeypatch.setattr(pgschema, "MIGRATIONS", [*pgschema.MIGRATIONS, v3])
    monkeypatch.setattr("voicebank.store.pgcatalogue.MIGRATIONS", pgschema.MIGRATIONS)
    store = open_store(shared_location.catalogue, blobs=shared_location.blobs)
    assert store.catalogue.user_version() == 3
    with store.catalogue.read() as conn:
        assert [tuple(r) for r in conn.execute("SELECT name, rating FROM voices")] == [("kept", 3)]
    store.close()
    open_store(shared_location.catalogue, blobs=shared_location.blobs).close()  # not applied twice
    monkeypatch.setattr("voicebank.store.pgcatalogue.MIGRATIONS", original)
    with psycopg.connect(shared_location.catalogue, autocommit=True) as conn:
        conn.execute("UPDATE voicebank_meta SET version = 99")
    with pytest.raises(errors.CatalogueError, match=r"schema version 99.*upgrade voicebank"):
        open_store(shared_location.catalogue, blobs=shared_location.blobs)


def test_lost_tables_beside_stored_objects_are_damage_not_a_new_library(shared_location):
    store = open_store(shared_location.catalogue, blobs=shared_location.blobs)
    store.blobs.write(b"some voice", ".wav")
    store.close()
    with psycopg.connect(shared_location.catalogue, autocommit=True) as conn:
        conn.execute("DROP TABLE voicebank_meta")
    with pytest.raises(errors.CatalogueDamagedError, match="tables are missing while the library holds content"):
        open_store(shared_location.catalogue, blobs=shared_location.blobs)


def test_an_unreachable_database_or_bucket_is_a_clear_error(postgres_server, s3_bucket):
    from cluster_fixtures import free_ports

    (port,) = free_ports(1)
    url = f"postgresql://someone:secret@127.0.0.1:{port}/nowhere"
    with pytest.raises(errors.CatalogueError, match="cannot reach the library catalogue") as e:
        PgCatalogue(url, timeout=2).migrate()
    assert "secret" not in str(e.value) and redact(url) in str(e.value)
    with pytest.raises(errors.LibraryError, match="does not exist"):
        open_store(postgres_server.url(), blobs="s3://no-such-bucket-here/x")
    with pytest.raises(errors.LibraryError, match="s3://bucket/prefix"):
        open_store(postgres_server.url(), blobs="/a/directory")
