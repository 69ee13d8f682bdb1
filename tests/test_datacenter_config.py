"""config/datacenter.example.yaml is valid, shows every option at its default, and reads the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.datacenter.config import (ApiConfig, BrokerConfig, CollectorConfig, CommandsConfig, DatabaseConfig, LogConfig,
                                    StorageConfig, load_datacenter_config)
from edge.errors import ConfigError
from test_docs import assert_every_field_at_default

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "datacenter.example.yaml"
ENV = {"EDGE_MQTT_URL": "mqtt://broker.dc.example:1883", "EDGE_DATABASE_URL": "postgresql://edge@db/edge"}


def test_the_example_reads_broker_and_database_from_the_environment():
    config = load_datacenter_config(EXAMPLE, env=ENV)
    assert (config.mqtt.url, config.database.url) == (ENV["EDGE_MQTT_URL"], ENV["EDGE_DATABASE_URL"])


def test_loading_the_data_center_config_imports_nothing_of_the_gateway():
    """The two sides share the contract and the neutral config reader, nothing else: a data-center host never
    imports (or needs) a module of the gateway."""
    code = ("import sys; from edge.datacenter.config import load_datacenter_config; "
            f"load_datacenter_config(sys.argv[1], env={ENV!r}); "
            "import edge.datacenter.collector, edge.datacenter.api; "
            "print(sorted(m for m in sys.modules if m.startswith('edge.gateway')))")
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_every_option_is_shown_at_its_default():
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert_every_field_at_default(BrokerConfig, {**doc["mqtt"], "url": ENV["EDGE_MQTT_URL"]}, "mqtt")
    assert_every_field_at_default(DatabaseConfig, {**doc["database"], "url": ENV["EDGE_DATABASE_URL"]}, "database")
    assert_every_field_at_default(CollectorConfig, doc["collector"], "collector")
    assert_every_field_at_default(ApiConfig, doc["api"], "api")
    assert_every_field_at_default(CommandsConfig, doc["commands"], "commands")
    assert_every_field_at_default(StorageConfig, doc["storage"], "storage")
    assert_every_field_at_default(LogConfig, doc["log"], "log")


def test_an_unset_variable_is_reported_with_file_and_line():
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(EXAMPLE, env={"EDGE_MQTT_URL": ENV["EDGE_MQTT_URL"]})
    line = next(n for n, text in enumerate(EXAMPLE.read_text().splitlines(), 1) if "${EDGE_DATABASE_URL}" in text)
    assert caught.value.problems == [
        f"{EXAMPLE}:{line}: database.url: environment variable EDGE_DATABASE_URL is not set "
        "(write ${EDGE_DATABASE_URL:-default} for a default)"]


def test_bad_urls_and_unknown_keys_are_named(tmp_path):
    path = tmp_path / "dc.yaml"
    path.write_text("mqtt:\n  url: http://broker\n  colour: blue\ndatabase:\n  url: mysql://db\n")
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(path, env={})
    assert caught.value.problems == [
        f"{path}:2: mqtt.url: invalid broker url 'http://broker': use mqtt://host:1883 or mqtts://host:8883",
        f"{path}:3: mqtt.colour: unknown key",
        f"{path}:5: database.url: the database url must start with postgresql://",
    ]


def test_storage_periods_are_checked_and_named(tmp_path):
    path = tmp_path / "dc.yaml"
    path.write_text("mqtt:\n  url: mqtt://broker\ndatabase:\n  url: postgresql://db/edge\n"
                    "storage:\n  raw_days: 0\n  maintain_every: 0s\n")
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(path, env={})
    assert caught.value.problems == [
        f"{path}:6: storage.raw_days: Input should be greater than or equal to 1",
        f"{path}:7: storage.maintain_every: invalid duration '0s': must be greater than zero",
    ]
    path.write_text("mqtt:\n  url: mqtt://broker\ndatabase:\n  url: postgresql://db/edge\n"
                    "storage:\n  raw_days: 30\n  compacted_days: 30\n")
    with pytest.raises(ConfigError) as caught:
        load_datacenter_config(path, env={})
    assert caught.value.problems == [
        f"{path}:5: storage: compacted_days (30) must be longer than raw_days (30): readings are compacted only once "
        "raw_days have passed"]
    path.write_text("mqtt:\n  url: mqtt://broker\ndatabase:\n  url: postgresql://db/edge\n"
                    "storage:\n  raw_days: 7\n  compacted_days: 730\n")
    storage = load_datacenter_config(path, env={}).storage
    assert (storage.raw_days, storage.compacted_days, storage.maintain, storage.maintain_every) == (7, 730, True, 60)
