"""Property-based tests of the API against its own OpenAPI schema (schemathesis), on a live server.

Bounded: a few examples per operation, so the whole module takes well under a minute.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from audio_fixtures import GOLDEN_INPUTS  # noqa: E402
from service_helpers import make_server  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, golden_weights_dir, service_extractor):
    srv = make_server(tmp_path_factory.mktemp("schema"), golden_weights_dir, service_extractor, max_upload_mb=2)
    lib = srv.app.state.service.library
    lib.add(GOLDEN_INPUTS / "p240_24k.mp3", "bob", mode="conditionals", consent="t", force=True)
    # no API keys (a loopback server): the generated requests reach the routes; the key checks have their own
    # tests in test_service_api.py
    with srv:
        yield schemathesis.openapi.from_url(f"{srv.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(timeout=60,
                           checks=[checks.not_a_server_error, checks.status_code_conformance,
                                   checks.content_type_conformance, checks.response_schema_conformance,
                                   checks.response_headers_conformance])
