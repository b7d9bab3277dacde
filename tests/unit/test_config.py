from pathlib import Path

import pytest
from smsgate.config import Config, ConfigError, load

FULL = """
[nats]
url = "nats://10.0.0.1:4222, nats://10.0.0.2:4222"
replicas = 3

[api]
listen = "127.0.0.1:9000"
[[api.users]]
name = "smsuser"
password = "secret"
ports = ["lte-1", "lte-2"]

[agent]
name = "host-a"
[[agent.ports]]
name = "lte-1"
device = "/dev/ttyUSB2"
[[agent.ports]]
name = "modem"
device = "socket://127.0.0.1:7000"
number = 9

[callback]
url = "http://127.0.0.1/receive"
reports = false
[callback.params]
phonenumber = "from"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smsgate.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    config = load(None, env={})
    assert config == Config()
    assert config.nats.servers == ["nats://127.0.0.1:4222"]
    assert config.callback.params.phonenumber == "num"
    assert config.api.default_report == "JSON"


def test_full_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, FULL), env={})
    assert config.nats.servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
    assert config.nats.replicas == 3
    assert config.api.users[0].ports == ["lte-1", "lte-2"]
    assert [p.gateway_number for p in config.agent.ports] == [1, 9]
    assert config.callback.reports is False
    assert config.callback.params.phonenumber == "from"
    assert config.callback.params.status == "status"


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "SMSGATE_NATS_URL": "nats://127.0.0.1:5000",
        "SMSGATE_API_CORS": "true",
        "SMSGATE_SIM_PORTS": "32",
        "UNRELATED": "x",
    }
    config = load(write(tmp_path, FULL), env=env)
    assert config.nats.url == "nats://127.0.0.1:5000"
    assert config.api.cors is True
    assert config.sim.ports == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[agent]\nname='a'\n[[agent.ports]]\nname='lte.1'\ndevice='/dev/x'\n",
            r"agent.ports\[0\].name: Expected `str` matching regex",
        ),
        (
            "[agent]\nname='a'\n[[agent.ports]]\nname='lte-1'\n",
            r"agent.ports\[0\]: Object missing required field `device`",
        ),
        ("[api]\nlisten=8080\n", r"api.listen: Expected `str`, got `int`"),
        ("[nats]\nurl='x'\nbogus=1\n", r"nats: Object contains unknown field `bogus`"),
        ("[agent]\n[[agent.ports]]\nname='lte-1'\ndevice='/dev/x'\n", r"agent.name is required"),
        (
            "[agent]\nname='a'\n[[agent.ports]]\nname='p'\ndevice='/a'\n[[agent.ports]]\nname='p'\ndevice='/b'\n",
            r"duplicate port names \['p'\]",
        ),
        ("[api\n", r"not valid TOML"),
        (
            "[nats]\nreports_ttl=86400\n[agent]\nreport_timeout=90000\n",
            r"agent.report_timeout \(90000 s\) must end before nats.reports_ttl",
        ),
        (  # the status must outlast the settled window: 15 + 900 + 2 x 30 + 120 + 60
            "[nats]\nmessages_ttl=1155\n",
            r"nats.messages_ttl \(1155 s\) must outlast a settled message's claim and "
            r"result \(1155 s",
        ),
        (  # a longer holder_timeout moves the settled window past the default status TTL
            "[agent]\nholder_timeout=3600\n[nats]\nmessages_ttl=3600\n",
            r"nats.messages_ttl \(3600 s\) must outlast .* \(3855 s",
        ),
        (
            "[history]\nenabled=false\n[nats]\nmessages_ttl=3600\n",
            r"nats.messages_ttl \(3600 s\) is the only memory of a message's id when "
            r"\[history\] enabled = false: set it to at least 604800 s",
        ),
    ],
)
def test_bad_files_name_file_field_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load(path, env={})
    assert str(info.value).startswith(str(path))


def test_the_settled_window_follows_the_liveness_settings(tmp_path: Path) -> None:
    """A settled message's claim and result stay as long as another agent may still come
    to decide its send, plus the event stream's duplicate window and a minute."""
    assert load(write(tmp_path, ""), env={}).settled_ttl == 15 + 900 + 60 + 120 + 60
    text = "[agent]\nlease=2\nholder_timeout=10\nack_wait=5\n[nats]\nevents_duplicate_window=30\n"
    assert load(write(tmp_path, text), env={}).settled_ttl == 2 + 10 + 10 + 30 + 60


def test_without_history_the_status_is_kept_a_week(tmp_path: Path) -> None:
    text = "[history]\nenabled=false\n[nats]\nmessages_ttl=691200\n"
    assert load(write(tmp_path, text), env={}).nats.messages_ttl == 691200
    # named by no file, the status TTL follows what must outlast it
    assert load(write(tmp_path, "[history]\nenabled=false\n"), env={}).nats.messages_ttl == 604800
    assert load(write(tmp_path, ""), env={}).nats.messages_ttl == 3600
    longer = load(write(tmp_path, "[agent]\nholder_timeout=3600\n"), env={})
    assert longer.nats.messages_ttl == 2 * longer.settled_ttl
    by_env = load(None, env={"SMSGATE_HISTORY_ENABLED": "false"})
    assert by_env.nats.messages_ttl == 604800


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.toml", env={})
