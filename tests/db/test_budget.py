"""The connection budget's arithmetic, table-driven and as properties: what the server has room
for, the gateway's share of it, and each worker's pools within its part, never above it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokens_forge.config import Settings
from tokens_forge.db.budget import (
    MIN_PER_WORKER,
    ConnectionBudgetError,
    PoolSizes,
    ServerRoom,
    gateway_budget,
    plan_pools,
    serve_plan,
)

DEFAULT = Settings(_env_file=None)


def test_room_is_max_connections_less_reserved_in_use_and_a_margin():
    assert ServerRoom(100, 3, 0).available == 87          # margin: a tenth of max_connections
    assert ServerRoom(100, 3, 20).available == 67
    assert ServerRoom(12, 3, 0).available == 7            # margin at least 2
    assert ServerRoom(10, 3, 9).available == 0            # never negative
    assert "max_connections=100" in ServerRoom(100, 3, 5).describe()


def test_the_defaults_want_32_per_worker():
    sizes, warnings = plan_pools(DEFAULT, 1000, 1, "test")
    assert sizes == PoolSizes(16, 5, 10) and sizes.total == 32 and warnings == []


@pytest.mark.parametrize(("per_worker", "expected"), [
    (32, PoolSizes(16, 5, 10)),
    (21, PoolSizes(10, 5, 5)),      # 4 workers on max_connections=100: 87 // 4
    (10, PoolSizes(4, 5, 0)),
    (MIN_PER_WORKER, PoolSizes(2, 2, 0)),
])
def test_default_pools_shrink_to_the_share(per_worker, expected):
    sizes, warnings = plan_pools(DEFAULT, per_worker, 4, "test")
    assert sizes == expected and sizes.total <= per_worker
    assert warnings == []  # nothing the operator set was changed


def test_less_than_the_smallest_pools_is_refused_with_both_numbers():
    room = ServerRoom(12, 3, 0)
    with pytest.raises(ConnectionBudgetError) as exc:
        serve_plan(DEFAULT, room, 4)
    msg = exc.value.message
    assert "4 workers need at least 20" in msg and "max_connections=12" in msg and "leaves 7" in msg, msg
    total, sizes, _ = serve_plan(DEFAULT, room, 1)  # one worker fits
    assert total == 7 and sizes.total == 7


def test_an_operator_setting_keeps_its_size_where_it_can_else_is_clipped_with_a_warning():
    s = Settings(_env_file=None, hot_pool_size=40)
    sizes, warnings = plan_pools(s, 21, 4, "the server's max_connections=100")
    assert sizes == PoolSizes(18, 2, 0)
    assert warnings == ["TF_HOT_POOL_SIZE=40 does not fit in 21 connections per worker (the server's "
                        "max_connections=100, for 4 workers): using 18"]
    s = Settings(_env_file=None, db_pool_size=5, db_max_overflow=10)  # kept: the hot pool gives way
    assert plan_pools(s, 21, 4, "x") == (PoolSizes(5, 5, 10), [])
    s = Settings(_env_file=None, hot_pool_size=8)  # fits as given
    assert plan_pools(s, 21, 4, "x") == (PoolSizes(8, 5, 7), [])


def test_an_operator_budget_is_kept_when_it_fits_and_clipped_when_not():
    room = ServerRoom(100, 3, 0)
    assert gateway_budget(room, 40) == (40, [])
    assert gateway_budget(room, None) == (87, [])
    total, warnings = gateway_budget(room, 500)
    assert total == 87 and "TF_DB_CONNECTION_BUDGET=500 does not fit" in warnings[0]
    assert gateway_budget(None, 40) == (40, [])


@given(per_worker=st.integers(MIN_PER_WORKER, 400), hot=st.integers(1, 300), size=st.integers(1, 300),
       overflow=st.integers(0, 300), given_fields=st.sets(st.sampled_from(["hot_pool_size", "db_pool_size",
                                                                           "db_max_overflow"])))
def test_pools_never_exceed_the_share(per_worker, hot, size, overflow, given_fields):
    values = {"hot_pool_size": hot, "db_pool_size": size, "db_max_overflow": overflow}
    s = Settings(_env_file=None, **{k: v for k, v in values.items() if k in given_fields})
    want = PoolSizes(s.hot_pool_size, s.db_pool_size, s.db_max_overflow)
    sizes, warnings = plan_pools(s, per_worker, 2, "x")
    assert sizes.total <= per_worker
    assert sizes.hot >= min(2, want.hot) and sizes.engine_size >= 1 and sizes.engine_overflow >= 0
    if want.total <= per_worker:
        assert sizes == want and warnings == []
    assert len(warnings) <= len(given_fields)
