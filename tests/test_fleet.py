"""A fleet against the real data center: 200 simulated gateways (tests/fleet_kit.py), each with its own connection and
account, through the project's Mosquitto config (its own queue limit and ACL) into a collector and PostgreSQL; the
broker is killed (SIGKILL) and started again halfway, and every key produced is then compared with the database. The CI-sized version of
``bench/fleet.py`` (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import time

from dc_kit import datacenter_config
from fleet_kit import Fleet, Settings, accounts, check
from services import SECURE_USERS

from edge.datacenter.collector import Collector


def test_200_gateways_lose_and_duplicate_nothing_across_a_broker_crash(broker_factory, postgres, tmp_path):
    fleet_accounts = accounts(200, "ci")
    broker = broker_factory(acl=True, users={**SECURE_USERS, **dict(fleet_accounts)}, max_queued_messages=None)
    password_file = tmp_path / "collector.password"
    password_file.write_text(SECURE_USERS["collector"])
    collector = Collector(datacenter_config(broker, postgres, username="collector", password_file=password_file),
                          client_id="collector").start()
    # reconnecting within seconds (a gateway's default ceiling is 2 minutes), and re-sending unacknowledged
    # batches after 10 s instead of 30, so that the whole test stays within a minute
    fleet = Fleet(broker.host, broker.port, fleet_accounts, Settings(reconnect_max=3.0, ack_timeout=10.0))

    async def scenario() -> tuple[float | None, dict]:
        await fleet.start()
        fleet.producing = True
        await asyncio.sleep(12)
        await asyncio.to_thread(broker.kill)  # SIGKILL: what it took since its last autosave (10 s) is gone
        await asyncio.sleep(2)  # meanwhile every gateway keeps sampling into its backlog
        await asyncio.to_thread(broker.start)
        await asyncio.sleep(12)
        fleet.producing = False
        drained = await fleet.drain(40)
        summary = fleet.summary(26)
        await fleet.stop()
        return drained, summary

    try:
        assert collector.subscribed.wait(10)
        began = time.monotonic()
        drained, summary = asyncio.run(scenario())
        with postgres.connect(autocommit=True) as conn:
            counts = check(conn, fleet)
    finally:
        collector.stop()
    assert drained is not None, f"not everything was acknowledged within 40 s: {summary}"
    assert summary["disconnects"] == 200 and summary["connects"] >= 400  # every gateway lived through the restart
    assert summary["readings"] > 10_000 and counts["readings_stored"] == summary["readings"]
    assert counts["events_stored"] == summary["events"] > 200  # a daemon.start each, and switches and gaps
    assert (counts["lost"], counts["duplicated"], counts["unexpected"], counts["altered"]) == (0, 0, 0, 0), counts
    assert counts["gaps_reported"] == counts["gaps_made"]
    assert time.monotonic() - began < 60
    print(summary, counts)
