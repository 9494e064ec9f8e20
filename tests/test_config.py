"""Settings: defaults that need no file, a file, the environment on top, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from archiver.config import HostPort, SettingsError, load_settings
from tests.support import ARSIP, ROOT


def load(env: dict[str, str], tmp_path: Path, toml: str | None = None):
    config = tmp_path / "arsip.toml"
    if toml is not None:
        config.write_text(toml)
    return load_settings(
        environ={"ARSIP_DATA_DIR": str(tmp_path / "var"), **env}, config_file=config
    )


def test_defaults_keep_everything_on_loopback_under_var(tmp_path: Path) -> None:
    settings = load_settings(environ={}, config_file=tmp_path / "none.toml")
    assert (settings.smtp_host, settings.smtp_port, settings.lmtp_port) == ("127.0.0.1", 2525, 2424)
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("var")
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "var/arsip.db"
    )
    assert settings.max_message_size == 25 * 1024 * 1024
    assert settings.smarthost is None


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load(
        {"ARSIP_SMTP_PORT": "2600", "ARSIP_SMARTHOST": "mail.example.com:587"},
        tmp_path,
        "smtp_port = 2500\nlmtp_port = 2501\n"
        'journal_domains = { "Archive.Example.com" = "example.com" }\n'
        'domains = ["lists.example.com"]\n',
    )
    assert settings.smtp_port == 2600
    assert settings.lmtp_port == 2501
    assert settings.journal_domains == {"archive.example.com": "example.com"}
    assert settings.domains == ("lists.example.com",)
    assert settings.smarthost == HostPort("mail.example.com", 587)


def test_lists_in_the_environment_are_comma_separated(tmp_path: Path) -> None:
    settings = load(
        {
            "ARSIP_JOURNAL_ADDRESSES": "Journal@Archive.test, other@archive.test",
            "ARSIP_JOURNAL_DOMAINS": "bcc.example.com=example.com,bcc.example.org=example.org",
        },
        tmp_path,
    )
    assert settings.journal_addresses == ("journal@archive.test", "other@archive.test")
    assert settings.journal_domains["bcc.example.org"] == "example.org"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ARSIP_SMTP_PORT", "smtp"),
        ("ARSIP_WEB_PORT", "70000"),
        ("ARSIP_MAX_MESSAGE_SIZE", "-1"),
        ("ARSIP_JOURNAL_DOMAINS", "archive.example.com"),
        ("ARSIP_JOURNAL_ADDRESSES", "not-an-address"),
        ("ARSIP_JOURNAL_CLIENTS", "10.0.0.300"),
        ("ARSIP_LOG_LEVEL", "loud"),
        ("ARSIP_TLS_CERT", "/nonexistent/cert.pem"),
    ],
)
def test_a_bad_value_names_the_setting(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load(
            {variable: value, "ARSIP_TLS_KEY": "/nonexistent/key.pem"}
            if "TLS" in variable
            else {variable: value},
            tmp_path,
        )


def test_the_cli_stops_with_one_line_and_status_2_on_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [ARSIP, "stats"],
        env={"ARSIP_DATA_DIR": str(tmp_path), "ARSIP_SMTP_PORT": "lots"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("arsip: bad setting: ARSIP_SMTP_PORT: 'lots'")


def test_journal_sources_are_loopback_unless_configured(tmp_path: Path) -> None:
    assert [str(net) for net in load({}, tmp_path).journal_clients] == ["127.0.0.0/8", "::1/128"]
    clients = load({"ARSIP_JOURNAL_CLIENTS": "192.0.2.25, 2001:db8::/32"}, tmp_path)
    assert [str(net) for net in clients.journal_clients] == ["192.0.2.25/32", "2001:db8::/32"]


def test_a_bad_journal_login_is_refused_without_repeating_what_was_pasted(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ARSIP_JOURNAL_LOGINS") as refused:
        load({"ARSIP_JOURNAL_LOGINS": "mta:the-secret-itself"}, tmp_path)
    assert "the-secret-itself" not in str(refused.value)


def test_an_unknown_setting_in_the_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="smtp_prot"):
        load({}, tmp_path, "smtp_prot = 25\n")
