"""Shared fixtures: a fresh SQLite file per test, a hand-wound clock, a two-company config and a
Stack on it. The helpers behind them live in stack_helpers.py."""

from __future__ import annotations

import os

# python-telegram-bot warns (an error under filterwarnings) when RetryAfter.retry_after is read
# as an int; with this set it is a timedelta and the warning never fires.
os.environ["PTB_TIMEDELTA"] = "true"

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import store_helpers
from stack_helpers import Stack, make_config, open_stack

from core.clock import ManualClock
from core.config import Config
from core.service import FleetService
from core.store.db import Database
from core.store.engines import database_for


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    other = "postgres_only" if store_helpers.ENGINE == "sqlite" else "sqlite_only"
    skip = pytest.mark.skip(reason=f"not for {store_helpers.ENGINE}: marked {other}")
    for item in items:
        if other in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    mark = store_helpers.created()
    yield
    store_helpers.drop_since(mark)


def pytest_sessionfinish(session: pytest.Session) -> None:
    store_helpers.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def db(config: Config) -> AsyncIterator[Database]:
    async with database_for(config.storage) as database:
        yield database


@pytest.fixture
async def service(db: Database, config: Config, clock: ManualClock) -> FleetService:
    svc = FleetService(db, config, clock)
    await svc.sync_config()
    return svc


@pytest.fixture
async def stack(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Stack]:
    async with open_stack(tmp_path, clock) as s:
        yield s
