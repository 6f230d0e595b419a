"""An answer for a request whose receipt exists names it, whatever failed (issue 13, item 7): the
mapping of failures to answers carries the receipt a pipeline attached to the exception."""

from __future__ import annotations

import asyncpg

from tokens_forge.api.errors import as_forge_error
from tokens_forge.errors import name_receipt


def test_a_database_failure_after_the_receipt_was_written_names_it():
    exc = asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")
    name_receipt(exc, "rcpt_abc", {"X-TF-Receipt-Id": "rcpt_abc", "X-TF-Bucket": "credit"})
    err = as_forge_error(exc)
    assert err is not None and err.status_code == 503
    assert err.receipt_id == "rcpt_abc" and err.body()["error"]["receipt_id"] == "rcpt_abc"
    assert err.headers["X-TF-Receipt-Id"] == "rcpt_abc" and err.headers["X-TF-Bucket"] == "credit"


def test_a_failure_before_any_receipt_names_none():
    err = as_forge_error(OSError("connection refused"))
    assert err is not None and err.status_code == 503 and err.receipt_id is None
    assert "X-TF-Receipt-Id" not in err.headers
