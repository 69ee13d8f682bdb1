"""Coming back after an outage: a reconnect waits a share of the outage so far (fast while it is young, gently when
it is old), with jitter bounded to the upper half, and retries probe the broker's port before a whole session."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest

from edge.gateway.buffer import NewReading
from edge.gateway.sync import Sync, SyncConfig
from edge.gateway.sync.link import MemoryLink, MqttLink
from edge.gateway.sync.uplink import reconnect_delay
from edge import mqtt


def delays(down_for: float, n: int = 2000, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [reconnect_delay(down_for, 1.0, 120.0, 0.1, rng) for _ in range(n)]


def test_a_young_outage_is_retried_within_a_tenth_of_its_age_and_an_old_one_gently():
    assert set(delays(0.5)) == {1.0}  # never below reconnect_min
    after_a_minute = delays(60)
    assert 3.0 <= min(after_a_minute) and max(after_a_minute) <= 6.0  # the broker's return is seen within 6 s
    after_an_hour = delays(3600)
    assert 60.0 <= min(after_an_hour) and max(after_an_hour) <= 120.0  # reconnect_max caps it


def test_five_thousand_gateways_losing_the_broker_together_come_back_as_a_stream_not_a_herd():
    """5,000 gateways whose outage began together retry spread evenly over 3..6 s after a one-minute outage: no
    half-second holds much more than its even share (500 gateways, 10 % of the fleet)."""
    fleet = delays(60, n=5000, seed=7)
    per_half_second = Counter(int(d * 2) for d in fleet)
    assert set(per_half_second) == {6, 7, 8, 9, 10, 11}  # 3.0 .. 5.99 s; 6.0 exactly is possible but rare
    assert max(per_half_second.values()) < 5000 / 6 * 1.15


def test_retries_probe_the_broker_and_wait_a_share_of_the_outage_measured_on_the_clock(buffer, clock):
    link = MemoryLink()
    sync = Sync(SyncConfig(url="mqtt://dc.invalid:1883"), "gh-re", buffer, clock, link=link)
    # driven by hand (no thread, no sleeping): _connect() is one attempt, _backoff() the wait before the next
    assert sync._connect()
    buffer.append_readings([NewReading(clock.time(), "t1", "temperature", 20.0, "C")])
    link.lose("broker gone")
    link.refuse = "connection refused"
    with pytest.raises(Exception):
        link.poll(0)
    sync._lost("broker gone")

    for _ in range(12):  # a minute of retries, each one a probe only: no session is tried while nobody answers
        clock.advance(5)
        assert not sync._connect()
    assert link.probes == 12 and link.connects == 1
    assert 3.0 <= sync._backoff() <= 6.0  # down a minute: the return is seen within 6 s

    link.refuse = None
    assert sync._connect()
    assert sync.connected and link.connects == 2 and link.probes == 13
    clock.advance(3600)  # up an hour, then lost again: that outage starts young
    sync._lost("broker gone again")
    assert sync._backoff() == 1.0


def test_the_mqtt_probe_is_a_bare_tcp_connect():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    link = MqttLink(lambda: mqtt.BrokerLogin(f"mqtt://127.0.0.1:{port}", "mqttv5", "gw", None, None, None, None),
                    mqtt.Session("c", 30))
    assert link.probe(2.0)
    listener.close()
    assert not link.probe(2.0)
