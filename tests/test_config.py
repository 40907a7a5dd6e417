"""The config file: loading and checking it, profile precedence, secrets, ``ftlog config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ftlog.cli import FtlogGroup
from ftlog.cli import config as cli_config
from ftlog.cli.options import current_profile, db_option
from ftlog.config import (
    Config,
    Profile,
    load_config,
    masked,
    masked_url,
    resolve_api_key,
    resolve_settings,
)
from ftlog.errors import AuthError, UsageProblem
from ftlog.pricing import Price

TOKEN = "nb-secret-token-0123456789abcdef-WXYZ"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/very-secret-9876"
DB_PASSWORD = "hunter2-db-password"

FULL_CONFIG = """\
default_profile = "nebius"

[profiles.nebius]
base_url = "https://api.studio.nebius.com/v1"
api_key_env = "NEBIUS_API_KEY"
project_id = "project-e00example"
database_url = "postgresql+psycopg://ftlog@db/ftlog"
source = "nebius-prod"
notify_command = "notify-send ftlog"
notify_webhook_env = "SLACK_WEBHOOK_URL"

[profiles.nebius.prices]
"Qwen/*" = { per_million_tokens = 0.25, currency = "USD" }

[profiles.local]
base_url = "http://127.0.0.1:8000/v1"

[prices]
"meta-llama/Llama-3.1-8B-Instruct" = { per_million_tokens = 0.40, currency = "USD" }
"Qwen/*" = { per_million_tokens = 0.30, currency = "USD" }
"""


@pytest.fixture(autouse=True)
def no_profile_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FTLOG_PROFILE", "FTLOG_NOTIFY_WEBHOOK", "SLACK_WEBHOOK_URL", "STAGING_KEY"):
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(tmp_path / "config.toml", FULL_CONFIG)


def run(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    group = FtlogGroup(name="ftlog", commands=[cli_config.config])
    return CliRunner().invoke(group, list(args), env=env)


# -- loading -------------------------------------------------------------------------------


def test_the_documented_example_loads(config_file: Path) -> None:
    config = load_config(config_file)
    assert config.path == config_file
    assert config.default_profile == "nebius"
    assert sorted(config.profiles) == ["local", "nebius"]
    nebius = config.profile(None)
    assert nebius is not None
    assert nebius.name == "nebius"
    assert nebius.api_key_env == "NEBIUS_API_KEY"
    assert nebius.database_url == "postgresql+psycopg://ftlog@db/ftlog"
    # The profile's own prices first, then the top-level table.
    assert nebius.prices.price_for("Qwen/Qwen2.5-7B") == Price(0.25, "USD")
    assert nebius.prices.price_for("meta-llama/Llama-3.1-8B-Instruct") == Price(0.40, "USD")
    local = config.profile("local")
    assert local is not None
    assert local.prices is config.prices
    assert local.prices.price_for("Qwen/Qwen2.5-7B") == Price(0.30, "USD")


def test_the_module_docstring_example_loads(tmp_path: Path) -> None:
    import ftlog.config

    doc = ftlog.config.__doc__ or ""
    example = doc.split("A full example::\n", 1)[1].split("\nEvery key is optional", 1)[0]
    text = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    config = load_config(write(tmp_path / "example.toml", text))
    assert sorted(config.profiles) == ["local", "nebius"]


def test_a_missing_default_file_means_no_profiles() -> None:
    config = load_config(None)
    assert not config.exists
    assert config.profiles == {}
    assert config.profile(None) is None
    assert config.path.name == "config.toml"
    assert "xdg-config" in str(config.path)  # the isolated user config directory


def test_the_default_file_is_read_from_the_user_config_directory(tmp_path: Path) -> None:
    default = tmp_path / "xdg-config" / "ftlog" / "config.toml"
    default.parent.mkdir(parents=True)
    write(default, FULL_CONFIG)
    config = load_config(None)
    assert config.exists
    assert config.path == default
    assert config.default_profile == "nebius"


def test_ftlog_config_names_the_file(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTLOG_CONFIG", str(config_file))
    assert load_config(None).default_profile == "nebius"
    monkeypatch.setenv("FTLOG_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(UsageProblem, match=r"missing\.toml does not exist"):
        load_config(None)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageProblem) as caught:
        load_config(tmp_path / "nope.toml")
    assert str(caught.value) == f"the config file {tmp_path / 'nope.toml'} does not exist"


def test_a_toml_syntax_error_is_one_line_with_the_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[profiles.a]\nbase_url = "x"\nsource = nebius\n')
    with pytest.raises(UsageProblem) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in message


def test_a_syntax_error_at_the_end_still_names_a_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[profiles.a]\nbase_url =")
    with pytest.raises(UsageProblem, match="line 2"):
        load_config(path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'source = "ok"\nsource2 = "\xff"\n')
    with pytest.raises(UsageProblem, match=r"not UTF-8 text \(line 2\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("defualt_profile = 'x'\n", "defualt_profile", "did you mean default_profile?"),
        ("[profiles.nebius]\nbase_ur = 'https://x'\n", "profiles.nebius.base_ur", "base_url"),
        ("[profiles.nebius]\ncolour = 'red'\n", "profiles.nebius.colour", "known: base_url"),
        ("[profiles.\"a b\"]\napi_keyenv = 'X'\n", 'profiles."a b".api_keyenv', "api_key_env"),
        ("[price]\n", "price", "prices"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it_and_the_file(
    tmp_path: Path, text: str, key: str, hint: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(UsageProblem) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown key {key} (")
    assert hint in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_profile = 3\n", "default_profile must be a string, not a number"),
        ("profiles = 'x'\n", "profiles must be a table"),
        ("[profiles]\nnebius = 'x'\n", "profiles.nebius must be a table"),
        ("[profiles.a]\nsource = ['x']\n", "profiles.a.source must be a string, not an array"),
        ("[profiles.a]\nproject_id = true\n", "profiles.a.project_id must be a string, not a"),
        ("[profiles.a]\nsource = '  '\n", "profiles.a.source must not be empty"),
        ("[profiles.a]\nbase_url = 'ftp://x'\n", "base_url must be an http\\(s\\) URL"),
        ("default_profile = 'b'\n[profiles.a]\n", "default_profile 'b' is not a profile"),
        ("[profiles.a.prices]\nx = 1\n", "profiles.a.prices.x must be a table"),
    ],
)
def test_wrong_types_and_values_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(UsageProblem, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_token_pasted_into_api_key_env_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", f"[profiles.a]\napi_key_env = 'Bearer {TOKEN}'\n")
    with pytest.raises(UsageProblem, match="must be the NAME of an environment variable") as caught:
        load_config(path)
    assert TOKEN not in str(caught.value)


# -- secrets in the file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (f"api_key = '{TOKEN}'", "api_key"),
        (f"notify_webhook = '{WEBHOOK}'", "notify_webhook"),
        (f"database_url = 'postgresql+psycopg://ftlog:{DB_PASSWORD}@db/ftlog'", "database_url"),
    ],
)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_in_a_file_others_can_read_is_refused(
    tmp_path: Path, line: str, key: str, mode: int
) -> None:
    path = write(tmp_path / "config.toml", f"[profiles.a]\n{line}\n", mode)
    with pytest.raises(UsageProblem) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"profiles.a.{key}" in message
    assert f"chmod 600 {path}" in message
    assert TOKEN not in message and WEBHOOK not in message and DB_PASSWORD not in message
    # The same file, private, is accepted.
    path.chmod(0o600)
    assert load_config(path).profile("a") is not None


def test_secrets_by_variable_name_need_no_private_file(tmp_path: Path) -> None:
    text = FULL_CONFIG  # api_key_env, notify_webhook_env, a database_url without a password
    path = write(tmp_path / "config.toml", text, 0o644)
    assert load_config(path).profile("nebius") is not None


def test_masked_shows_at_most_the_last_four_characters() -> None:
    assert masked(TOKEN) == "…WXYZ"
    assert masked("short-token-123") == "****"  # 15 characters: nothing of it
    assert masked("x") == "****"
    assert masked_url(f"postgresql+psycopg://ftlog:{DB_PASSWORD}@db:5432/ftlog") == (
        "postgresql+psycopg://ftlog:***@db:5432/ftlog"
    )
    assert (
        masked_url("postgresql+psycopg://ftlog@db/ftlog") == "postgresql+psycopg://ftlog@db/ftlog"
    )
    assert masked_url("sqlite:////tmp/a:b@c.db") == "sqlite:////tmp/a:b@c.db"


def test_the_profile_repr_masks_secrets() -> None:
    profile = Profile(
        name="p",
        api_key=TOKEN,
        notify_webhook=WEBHOOK,
        database_url=f"postgresql://u:{DB_PASSWORD}@h/d",
    )
    text = repr(profile)
    assert TOKEN not in text and WEBHOOK not in text and DB_PASSWORD not in text
    assert "api_key='…WXYZ'" in text
    assert "postgresql://u:***@h/d" in text


# -- precedence ------------------------------------------------------------------------------


@click.command()
@click.option("--base-url")
@click.option("--project-id")
@click.option("--source")
@db_option
def echo_options(**values: str | None) -> None:
    """Stands in for ``ftlog snapshot``: the same parameter names and the same settings."""
    click.echo(json.dumps(values, sort_keys=True))


PROFILE_CONFIG = """\
[profiles.p]
base_url = "https://profile.example/v1"
database_url = "sqlite:///profile.db"
project_id = "project-p"
"""


@pytest.fixture
def profile_config(tmp_path: Path) -> Path:
    return write(tmp_path / "p.toml", PROFILE_CONFIG)


def resolve(args: list[str], env: dict[str, str] | None = None) -> dict[str, str | None]:
    result = CliRunner().invoke(echo_options, args, env=env)
    assert result.exit_code == 0, result.output
    values: dict[str, str | None] = json.loads(result.output)
    return values


def test_option_defaults_are_keyed_by_parameter_name(profile_config: Path) -> None:
    settings = resolve_settings(load_config(profile_config), "p", {})
    assert settings.option_defaults() == {
        "base_url": "https://profile.example/v1",
        "db_url": "sqlite:///profile.db",
        "project_id": "project-p",
        "concurrency": "8",
    }


def test_a_profile_sets_the_concurrency_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    good = write(tmp_path / "good.toml", "[profiles.p]\nconcurrency = 3\n")
    assert resolve_settings(load_config(good), "p", {}).option_defaults()["concurrency"] == "3"
    for bad in ("0", "65", '"4"', "2.5", "true"):
        path = write(tmp_path / "bad.toml", f"[profiles.p]\nconcurrency = {bad}\n")
        with pytest.raises(UsageProblem, match="concurrency must be a whole number from 1 to 64"):
            load_config(path)


def test_without_a_profile_the_builtin_defaults_apply(tmp_path: Path) -> None:
    assert resolve([]) == {
        "base_url": "https://api.studio.nebius.com/v1",
        "db_url": f"sqlite:///{tmp_path / 'xdg-data' / 'ftlog' / 'ftlog.db'}",
        "project_id": None,
        "source": None,
    }


def test_the_profile_beats_the_builtin_default(profile_config: Path) -> None:
    assert resolve(["--config", str(profile_config), "--profile", "p"]) == {
        "base_url": "https://profile.example/v1",
        "db_url": "sqlite:///profile.db",
        "project_id": "project-p",
        "source": None,  # not in the profile: the built-in default
    }


def test_the_environment_beats_the_profile(profile_config: Path) -> None:
    env = {"FTLOG_BASE_URL": "https://env.example/v1", "FTLOG_DATABASE_URL": "sqlite:///env.db"}
    values = resolve(["--config", str(profile_config), "--profile", "p"], env)
    assert values["base_url"] == "https://env.example/v1"
    assert values["db_url"] == "sqlite:///env.db"
    assert values["project_id"] == "project-p"


def test_the_command_line_beats_the_environment(profile_config: Path) -> None:
    env = {"FTLOG_BASE_URL": "https://env.example/v1", "FTLOG_PROFILE": "p"}
    args = ["--base-url", "https://option.example/v1", "--project-id", "project-o"]
    values = resolve([*args, "--config", str(profile_config)], env)
    assert values["base_url"] == "https://option.example/v1"
    assert values["project_id"] == "project-o"
    assert values["db_url"] == "sqlite:///profile.db"


@click.command()
@click.option("--base-url")
@click.option("--source")
@click.option("--api-key")
@db_option
def profiled(base_url: str, source: str | None, api_key: str | None, db_url: str) -> None:
    profile = current_profile()
    key = profile.resolve_api_key(api_key) if profile else None
    click.echo(
        json.dumps(
            {
                "base_url": base_url,
                "source": source,
                "profile": profile and profile.name,
                "key": key,
            }
        )
    )


def test_profile_options_apply_the_selected_profile(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("NEBIUS_API_KEY", TOKEN)

    def invoke(*args: str, env: dict[str, str] | None = None) -> dict[str, str | None]:
        result = runner.invoke(profiled, list(args), env=env)
        assert result.exit_code == 0, result.output
        values: dict[str, str | None] = json.loads(result.output)
        return values

    # --config after --profile: both eager options are read before the file is loaded.
    got = invoke("--profile", "local", "--config", str(config_file))
    assert got == {
        "base_url": "http://127.0.0.1:8000/v1",
        "source": None,
        "profile": "local",
        "key": TOKEN,  # local names no token: the global variables
    }
    got = invoke("--config", str(config_file))  # the default_profile
    assert got["profile"] == "nebius"
    assert got["source"] == "nebius-prod"
    assert got["key"] == TOKEN
    got = invoke("--config", str(config_file), env={"FTLOG_PROFILE": "local"})
    assert got["profile"] == "local"
    got = invoke(
        "--config", str(config_file), "--source", "cli", env={"FTLOG_BASE_URL": "https://env/v1"}
    )
    assert (got["base_url"], got["source"]) == ("https://env/v1", "cli")
    assert invoke()["profile"] is None  # no config file at the default place


def test_profile_options_report_an_unknown_profile(config_file: Path) -> None:
    result = CliRunner().invoke(profiled, ["--config", str(config_file), "--profile", "prod"])
    assert isinstance(result.exception, UsageProblem)
    assert str(result.exception) == (
        f"no profile 'prod' in {config_file} (profiles: local, nebius)"
    )


def test_api_key_order() -> None:
    both = Profile(name="p", api_key_env="STAGING_KEY", api_key="plain-token")
    environ = {"STAGING_KEY": "from-staging", "FTLOG_API_KEY": "from-ftlog", "NEBIUS_API_KEY": "nb"}

    assert both.resolve_api_key(" explicit ", environ) == "explicit"
    assert both.resolve_api_key(None, environ) == "from-staging"
    assert both.resolve_api_key(None, {**environ, "STAGING_KEY": " "}) == "plain-token"
    assert Profile(name="p", api_key="plain-token").resolve_api_key(None, environ) == "plain-token"
    silent = Profile(name="p")  # says nothing about its token: the global variables
    assert silent.resolve_api_key(None, environ) == "from-ftlog"
    assert silent.resolve_api_key(None, {"NEBIUS_API_KEY": "nb"}) == "nb"
    assert silent.resolve_api_key(None, {}) is None


def test_a_profile_whose_token_variable_is_unset_does_not_borrow_another_token() -> None:
    profile = Profile(name="staging", api_key_env="STAGING_KEY")
    with pytest.raises(AuthError) as caught:
        profile.resolve_api_key(None, {"FTLOG_API_KEY": "the-production-token"})
    assert str(caught.value) == (
        "no API key: profile staging reads the token from $STAGING_KEY, which is not set"
    )
    assert profile.resolve_api_key("explicit", {}) == "explicit"


def test_resolve_api_key_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGING_KEY", TOKEN)
    assert Profile(name="s", api_key_env="STAGING_KEY").resolve_api_key(None) == TOKEN


def webhook(profile: Profile | None, environ: dict[str, str], given: str | None = None) -> Any:
    """The webhook setting every command resolves for ``profile``."""
    config = Config(Path("c.toml"), {"p": profile} if profile else {}, "p" if profile else None)
    options = {"notify_webhook": given} if given else {}
    return resolve_settings(config, None, environ, options).values["notify_webhook"]


def test_webhook_order() -> None:
    both = Profile(name="p", notify_webhook_env="SLACK_WEBHOOK_URL", notify_webhook="plain-hook")
    assert webhook(both, {"SLACK_WEBHOOK_URL": "env"}, "explicit").value == "explicit"
    assert webhook(both, {"SLACK_WEBHOOK_URL": "env"}).value == "env"
    assert webhook(both, {}).value == "plain-hook"
    assert webhook(Profile(name="p"), {}).value is None
    assert webhook(None, {}).value is None

    named = Profile(name="p", notify_webhook_env="SLACK_WEBHOOK_URL")
    unset = resolve_settings(Config(Path("c.toml"), {"p": named}, "p"), None, {})
    assert "notify_webhook" not in unset.option_defaults()
    assert unset.values["notify_webhook"].problem == (
        "profile p reads the webhook URL from $SLACK_WEBHOOK_URL, which is not set"
    )
    assert webhook(named, {}).shown == "(not set: $SLACK_WEBHOOK_URL is unset)"


def test_ftlog_notify_webhook_beats_the_profile() -> None:
    named = Profile(name="p", notify_webhook_env="SLACK_WEBHOOK_URL", notify_webhook="plain")
    environ = {"FTLOG_NOTIFY_WEBHOOK": "global", "SLACK_WEBHOOK_URL": "profile"}
    assert webhook(named, environ).value == "global"
    assert webhook(named, environ, "option").value == "option"
    unset = Profile(name="p", notify_webhook_env="SLACK_WEBHOOK_URL")
    config = Config(Path("c.toml"), {"p": unset}, "p")
    resolved = resolve_settings(config, None, {"FTLOG_NOTIFY_WEBHOOK": "global"})
    assert resolved.option_defaults()["notify_webhook"] == "global"
    assert resolved.values["notify_webhook"].problem is None
    rows = resolve_settings(Config(Path("c.toml")), None, {"FTLOG_NOTIFY_WEBHOOK": WEBHOOK})
    assert ("notify_webhook", "…9876", "env FTLOG_NOTIFY_WEBHOOK") in rows.rows()


def test_an_unset_webhook_variable_is_a_warning_where_a_webhook_is_sent(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @click.command()
    @click.option("--notify-webhook")
    @db_option
    def sends(notify_webhook: str | None, db_url: str) -> None:
        click.echo(repr(notify_webhook))

    @click.command()
    @db_option
    def reads(db_url: str) -> None:
        click.echo(db_url)

    result = CliRunner().invoke(sends, ["--config", str(config_file)])
    assert result.output == "None\n"
    assert "$SLACK_WEBHOOK_URL, which is not set; no webhook notifications" in caplog.text
    caplog.clear()
    assert CliRunner().invoke(reads, ["--config", str(config_file)]).exit_code == 0
    assert caplog.text == ""


def test_config_profile_lookup(config_file: Path) -> None:
    config = load_config(config_file)
    assert config.profile("local") is config.profiles["local"]
    assert Config(config_file).profile(None) is None
    with pytest.raises(UsageProblem, match=r"no profile 'x' in .* \(profiles: local, nebius\)"):
        config.profile("x")
    with pytest.raises(UsageProblem, match="it has none"):
        Config(config_file).profile("x")


# -- ftlog config ----------------------------------------------------------------------------


def rows_of(output: str) -> dict[str, tuple[str, str]]:
    lines = output.splitlines()
    assert lines[0].split() == ["setting", "value", "source"]
    rows = {}
    for line in lines[1:]:
        setting, rest = line.split(maxsplit=1)
        value, source = (part.strip() for part in rest.split("  ", 1))
        rows[setting] = (value, source.strip())
    return rows


def test_config_show_names_each_source(config_file: Path) -> None:
    env = {"NEBIUS_API_KEY": TOKEN, "FTLOG_DATABASE_URL": "sqlite:///env.db"}
    result = run("config", "show", "--config", str(config_file), env=env)
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    assert rows["config"] == (str(config_file), "option")
    assert rows["profile"] == ("nebius", "config default_profile")
    assert rows["base_url"] == ("https://api.studio.nebius.com/v1", "profile nebius")
    assert rows["api_key"] == ("…WXYZ", "env NEBIUS_API_KEY (profile nebius)")
    assert rows["database_url"] == ("sqlite:///env.db", "env FTLOG_DATABASE_URL")
    assert rows["notify_webhook"] == ("(not set: $SLACK_WEBHOOK_URL is unset)", "profile nebius")
    assert rows["prices"] == ("3 entries", "profile nebius")


def test_config_show_without_a_config_file() -> None:
    result = run("config", "show", env={"FTLOG_API_KEY": TOKEN})
    assert result.exit_code == 0, result.output
    rows = rows_of(result.output)
    assert rows["config"][0].endswith("config.toml (not found)")
    assert rows["profile"] == ("(none)", "default")
    assert rows["base_url"] == ("https://api.studio.nebius.com/v1", "default")
    assert rows["api_key"] == ("…WXYZ", "env FTLOG_API_KEY")
    assert rows["prices"] == ("(none)", "default")


def test_config_show_never_prints_a_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path / "private.toml",
        f"""\
[profiles.p]
api_key = "{TOKEN}"
notify_webhook = "{WEBHOOK}"
database_url = "postgresql+psycopg://ftlog:{DB_PASSWORD}@db/ftlog"
""",
    )
    result = run("config", "show", "--config", str(path), "--profile", "p")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert WEBHOOK not in result.output
    assert DB_PASSWORD not in result.output
    rows = rows_of(result.output)
    assert rows["profile"] == ("p", "option")
    assert rows["api_key"] == ("…WXYZ", "profile p")
    assert rows["notify_webhook"] == ("…9876", "profile p")
    assert rows["database_url"] == ("postgresql+psycopg://ftlog:***@db/ftlog", "profile p")

    # From the environment, through the profile's variable names, just as masked.
    result = run(
        "config",
        "show",
        "--config",
        str(path),
        env={"FTLOG_PROFILE": "p", "FTLOG_API_KEY": TOKEN + "-other"},
    )
    assert rows_of(result.output)["profile"] == ("p", "env FTLOG_PROFILE")
    assert TOKEN not in result.output


def test_config_show_errors_are_one_line(tmp_path: Path) -> None:
    result = run("config", "show", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert result.output == f"Error: the config file {tmp_path / 'nope.toml'} does not exist\n"
    result = run("config", "show", "--profile", "ghost")
    assert result.exit_code == 2
    assert "no profile 'ghost'" in result.output


def test_config_path(config_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        FtlogGroup(name="ftlog", commands=[cli_config.config]), ["config", "path"]
    )
    assert result.exit_code == 0
    assert result.stdout == f"{tmp_path / 'xdg-config' / 'ftlog' / 'config.toml'}\n"
    assert result.stderr == "(does not exist)\n"

    result = run("config", "path", env={"FTLOG_CONFIG": str(config_file)})
    assert result.stdout == f"{config_file}\n"
    assert result.stderr == "(exists, from env FTLOG_CONFIG)\n"


def test_resolved_settings_reports_command_line_values(config_file: Path) -> None:
    rows = resolve_settings(
        load_config(config_file),
        "local",
        {"FTLOG_BASE_URL": "https://env/v1"},
        {"base_url": "https://option/v1", "api_key": TOKEN, "profile": "local"},
    ).rows()
    table = {setting: (value, source) for setting, value, source in rows}
    assert table["base_url"] == ("https://option/v1", "option")
    assert table["api_key"] == ("…WXYZ", "option")
    assert table["profile"] == ("local", "option")
    assert [setting for setting, _, _ in rows] == [
        "config",
        "profile",
        "base_url",
        "api_key",
        "project_id",
        "database_url",
        "source",
        "notify_command",
        "notify_webhook",
        "concurrency",
        "prices",
    ]


def test_the_config_command_module_imports_only_click() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ftlog.cli.config as c; "
        "print(sorted(m for m in ('ftlog.config', 'ftlog.pricing', 'pandas', 'pathlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_a_profile_the_token_comes_from_the_option_then_the_variables() -> None:
    assert resolve_api_key(None, None, {}) is None
    assert resolve_api_key(None, None, {"NEBIUS_API_KEY": "from-nebius"}) == "from-nebius"
    both = {"NEBIUS_API_KEY": "from-nebius", "FTLOG_API_KEY": "from-ftlog"}
    assert resolve_api_key(None, None, both) == "from-ftlog"
    assert resolve_api_key(None, "  explicit ", both) == "explicit"
    assert resolve_api_key(None, "", both) == "from-ftlog"
