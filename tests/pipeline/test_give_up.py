"""The answer when every attempt failed, table-driven."""

import pytest

from tokens_forge.pipeline.give_up import give_up_error, upstream_headers
from tokens_forge.upstream.client import UpstreamFailure


@pytest.mark.parametrize("failure,status,code,headers", [
    (UpstreamFailure("timeout", "slow"), 504, "upstream_timeout", {}),
    (UpstreamFailure("upstream_error", "HTTP 429", status=429, retry_after=1.0, retry_after_header="30"),
     429, "upstream_rate_limited", {"Retry-After": "30"}),
    (UpstreamFailure("upstream_error", "HTTP 429", status=429), 429, "upstream_rate_limited", {}),
    (UpstreamFailure("upstream_error", "HTTP 500", status=500), 502, "upstream_error", {}),
    (UpstreamFailure("connect_error", "refused"), 502, "upstream_error", {}),
])
def test_give_up(failure, status, code, headers):
    err = give_up_error(failure, 2, 7)
    assert (err.status_code, err.code, err.headers) == (status, code, headers)
    assert "2 attempt(s)" in err.message and "charged 7 micros" in err.message


def test_upstream_request_id():
    assert upstream_headers("req_123") == {"X-TF-Upstream-Request-Id": "req_123"}
    assert upstream_headers(None) == {}
