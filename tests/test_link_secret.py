"""The link-signing secret is shared by replicas that start at the same moment (a real PostgreSQL)."""

from __future__ import annotations

import asyncio

from receiver.database import create_pool
from receiver.store import Store


async def test_replicas_starting_together_agree_on_one_link_secret(database_url: str) -> None:
    # Two replicas racing: the loser's INSERT waits for the winner's commit and then does nothing, and the
    # statement's snapshot predates that commit, so a single statement could read no secret at all.
    pools = [await create_pool(database_url, min_size=1, max_size=1) for _ in range(12)]
    try:
        stores = [Store(pool) for pool in pools]
        secrets = await asyncio.gather(*(s.link_secret(f"candidate-{i}") for i, s in enumerate(stores)))
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert len(set(secrets)) == 1, secrets
    assert secrets[0].startswith("candidate-")
