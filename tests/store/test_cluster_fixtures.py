"""The shared library's test servers themselves: each test gets its own empty database and bucket."""

from __future__ import annotations


def test_each_test_gets_an_empty_database(pg_database):
    import psycopg

    with psycopg.connect(pg_database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        conn.execute("CREATE TABLE scratch (x int)")
    assert tables == (0,)


def test_another_test_never_sees_the_last_ones_tables(pg_database):
    import psycopg

    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_each_test_gets_an_empty_bucket_and_credentials(s3_bucket, s3_server):
    import os

    bucket = s3_bucket.removeprefix("s3://").split("/")[0]
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    client.put_object(Bucket=bucket, Key="library/x", Body=b"x")
    assert client.get_object(Bucket=bucket, Key="library/x")["Body"].read() == b"x"
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint
