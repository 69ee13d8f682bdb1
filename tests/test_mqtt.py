"""The one MQTT client builder (edge/mqtt.py): URLs, credentials, TLS with client certificates, sessions; the
gateway's uplink, edge doctor and the collector all build their clients with it."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from edge import mqtt
from edge.datacenter import source
from edge.datacenter.config import BrokerConfig
from edge.gateway.sync import SyncConfig, Sync
from tests.services import MOSQUITTO, Broker, _require

SECRET = "s3cret-never-shown"


def test_login_parses_urls_and_default_ports():
    assert (mqtt.BrokerLogin("mqtt://dc.example").host, mqtt.BrokerLogin("mqtt://dc.example").port) == \
        ("dc.example", 1883)
    assert mqtt.BrokerLogin("mqtts://dc.example").port == 8883
    assert mqtt.BrokerLogin("mqtts://dc.example:9999").where == "dc.example:9999"
    assert mqtt.BrokerLogin("mqtts://dc.example").tls and not mqtt.BrokerLogin("mqtt://dc.example").tls
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        mqtt.BrokerLogin("http://dc.example")
    with pytest.raises(ValueError, match="cert_file"):
        mqtt.BrokerLogin("mqtts://dc.example", key_file=Path("/k.pem"))


def test_password_comes_from_its_file_and_is_never_shown(tmp_path, caplog):
    password_file = tmp_path / "password"
    password_file.write_text(SECRET + "\n")
    login = mqtt.BrokerLogin("mqtt://127.0.0.1:1", username="gh-1", password_file=password_file)
    assert login.password() == SECRET
    caplog.set_level(logging.DEBUG)
    client = mqtt.build_client(login, mqtt.Session("edge-gh-1"), logging.getLogger("test.paho"))
    assert client._username == b"gh-1" and client._password == SECRET.encode()
    shown = repr(login) + repr(mqtt.Session("edge-gh-1")) + caplog.text
    assert SECRET not in shown
    assert "gh-1" in repr(login)  # the account is no secret


def test_no_username_logs_in_without_credentials():
    client = mqtt.build_client(mqtt.BrokerLogin("mqtt://127.0.0.1:1"), mqtt.Session("c"))
    assert client._username is None and client._password is None


def test_session_settings_reach_the_connect():
    login = mqtt.BrokerLogin("mqtt://127.0.0.1:1")
    args = mqtt.connect_args(login, mqtt.Session("c", keepalive=45.0, session_expiry=3600, receive_maximum=7))
    assert args["keepalive"] == 45 and args["clean_start"] is False
    assert args["properties"].SessionExpiryInterval == 3600 and args["properties"].ReceiveMaximum == 7
    old = mqtt.BrokerLogin("mqtt://127.0.0.1:1", version="mqttv311")
    assert mqtt.connect_args(old, mqtt.Session("c", keepalive=10)) == {"keepalive": 10}
    client = mqtt.build_client(old, mqtt.Session("c", clean_start=False, manual_ack=True))
    assert client._clean_session is False and client._manual_ack is True


def test_every_side_builds_the_same_login(tmp_path):
    """The uplink, the doctor and the collector take TLS files, client certificate included, from their configs."""
    files = {name: tmp_path / f"{name}.pem" for name in ("ca_file", "cert_file", "key_file")}
    sync = SyncConfig(url="mqtts://dc.example", **files)
    assert Sync._login(_SyncShell(sync)) == mqtt.BrokerLogin("mqtts://dc.example", "mqttv5", "gh-1", None, **files)
    dc = BrokerConfig(url="mqtts://dc.example", username="collector", **files)
    assert source.login_of(dc) == mqtt.BrokerLogin("mqtts://dc.example", "mqttv5", "collector", None, **files)
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        BrokerConfig(url="mqtts://dc.example", key_file=files["key_file"])


class _SyncShell:
    def __init__(self, config: SyncConfig):
        self.config, self.gateway_id = config, "gh-1"
        self._broker = 0  # the first of sync.url's brokers

    def _url(self) -> str:
        return Sync._url(self)


# ------------------------------------------------------------------------ a real broker that requires certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, all made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", *extra, cwd=d)
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else
                                       "extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    return d


class _TlsBroker(Broker):
    """A private Mosquitto that speaks TLS only and requires a client certificate signed by the test CA."""

    def __init__(self, workdir: Path, pki: Path):
        self.pki = pki
        super().__init__(workdir)

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def _write_config(self) -> None:
        super()._write_config()
        self.config.write_text(self.config.read_text() + "\n".join([
            f"cafile {self.pki / 'ca.pem'}", f"certfile {self.pki / 'server.pem'}",
            f"keyfile {self.pki / 'server.key'}", "require_certificate true"]) + "\n")


@pytest.fixture
def tls_broker(tmp_path, pki):
    _require(MOSQUITTO, "mosquitto")
    broker = _TlsBroker(tmp_path / "mosquitto-tls", pki).start()
    yield broker
    broker.kill()


def _connects(login: mqtt.BrokerLogin) -> bool:
    client = mqtt.build_client(login, mqtt.Session("test-tls"))
    answered = threading.Event()
    client.on_connect = lambda *_a: answered.set()
    try:
        client.connect(login.host, login.port, **mqtt.connect_args(login, mqtt.Session("test-tls")))
        for _ in range(50):
            if client.loop(timeout=0.1) != 0 or answered.is_set():
                break
    except (ssl.SSLError, OSError):
        return False
    finally:
        client.disconnect()
    return answered.is_set()


def test_client_certificates_reach_a_broker_that_requires_them(tls_broker, pki):
    """The collector's login (whose builder had no client certificate before) gets through a broker requiring one;
    without the certificate the same login is turned away."""
    dc = BrokerConfig(url=tls_broker.url, ca_file=pki / "ca.pem", cert_file=pki / "client.pem",
                      key_file=pki / "client.key")
    assert _connects(source.login_of(dc))
    assert not _connects(source.login_of(BrokerConfig(url=tls_broker.url, ca_file=pki / "ca.pem")))
