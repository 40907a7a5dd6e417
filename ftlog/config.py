"""The config file: named profiles (where to collect from, where to store) and a price table.

**Where.** ``--config PATH``, else ``$FTLOG_CONFIG``, else ``config.toml`` in the user config
directory (``~/.config/ftlog/config.toml`` on Linux; ``ftlog config path`` prints it). A missing
file at the default place means "no profiles"; a file named by ``--config`` or
``$FTLOG_CONFIG`` must exist.

**What.** A full example::

    default_profile = "nebius"            # used when no --profile / $FTLOG_PROFILE is given

    [profiles.nebius]
    base_url = "https://api.studio.nebius.com/v1"
    api_key_env = "NEBIUS_API_KEY"        # the NAME of the variable holding the token
    project_id = "project-e00example"
    database_url = "postgresql+psycopg://ftlog@db/ftlog"
    source = "nebius-prod"
    notify_command = "notify-send ftlog"
    notify_webhook_env = "SLACK_WEBHOOK_URL"
    concurrency = 4                       # per-job requests in flight (default 8)

    [profiles.nebius.prices]              # this profile's own prices, looked up first
    "Qwen/*" = { per_million_tokens = 0.25, currency = "USD" }

    [profiles.local]
    base_url = "http://127.0.0.1:8000/v1"
    api_key = "dev-token"                 # plain text: only in a chmod 600 file
    database_url = "~/ftlog-local.db"     # a plain path is a SQLite file

    [prices]                              # per million trained tokens, for every profile
    "meta-llama/Llama-3.1-8B-Instruct" = { per_million_tokens = 0.40, currency = "USD" }
    "Qwen/*" = { per_million_tokens = 0.30, currency = "USD" }

Every key is optional. Profile keys: ``base_url``, ``api_key_env``, ``api_key``,
``project_id``, ``database_url``, ``source``, ``notify_command``, ``notify_webhook_env``,
``notify_webhook`` (strings), ``concurrency`` (1 to 64) and ``prices`` (a table). Unknown
keys and wrong types are errors naming the key and the file, so a typo never goes unnoticed.
Prices and how a model finds its price: :mod:`ftlog.pricing`; a profile's ``prices`` are
looked up first, then the top-level ``[prices]``.

**Secrets.** The token and the webhook URL are named by the environment variable that holds
them (``api_key_env``, ``notify_webhook_env``). Writing them in the file (``api_key``,
``notify_webhook``, or a password inside ``database_url``) is accepted only when the file is
private to its owner (no group or other permission bits: ``chmod 600``); otherwise loading
fails. Secrets are never printed: ``repr`` and ``ftlog config show`` mask them
(:func:`masked`).

**Precedence**, highest first:

1. the command-line option (``--base-url``, ``--db``, ...);
2. its environment variable (``FTLOG_BASE_URL``, ``FTLOG_DATABASE_URL``,
   ``FTLOG_NOTIFY_WEBHOOK``);
3. the selected profile (``--profile``, else ``$FTLOG_PROFILE``, else ``default_profile``);
4. the built-in default.

:func:`resolve_settings` applies this order, once, for every command that touches the store or
the API: the CLI gives click its result as ``ctx.default_map``
(:meth:`Settings.option_defaults`), which click consults when an option is not on the command
line, and ``ftlog config show`` prints the same result (:meth:`Settings.rows`). Library
functions read no config file: they take the store and the prices as arguments.

The token is the exception, because a profile says *which* variable holds its token:
``--api-key``, else the variable named by the profile's ``api_key_env``, else the profile's
``api_key``, else ``$FTLOG_API_KEY``, else ``$NEBIUS_API_KEY``. A profile that names a variable
which is not set (and has no ``api_key``) is an error rather than a silent fall back to
another token. The webhook URL: ``--notify-webhook``, ``$FTLOG_NOTIFY_WEBHOOK``, the variable
named by ``notify_webhook_env``, then ``notify_webhook``.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ftlog import settings
from ftlog.errors import AuthError, UsageProblem
from ftlog.pricing import PriceTable, toml_key, toml_kind

_TOP_KEYS = ("default_profile", "profiles", "prices")
_PROFILE_STRINGS = (
    "base_url",
    "api_key_env",
    "api_key",
    "project_id",
    "database_url",
    "source",
    "notify_command",
    "notify_webhook_env",
    "notify_webhook",
)
_PROFILE_INTEGERS = {"concurrency": (1, 64)}
"""Profile keys that hold a whole number, and its bounds."""
_PROFILE_KEYS = (*_PROFILE_STRINGS, *_PROFILE_INTEGERS, "prices")
_SECRET_FIELDS = frozenset({"api_key", "notify_webhook"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)(?P<password>[^/@]*)@")
_MASK_MIN_LENGTH = 16
_NOT_SET = "(not set)"


def masked(value: str) -> str:
    """A secret for display: ``…`` and its last 4 characters, or ``****`` when it is shorter
    than 16 characters (too short to give away even 4)."""
    if len(value) < _MASK_MIN_LENGTH:
        return "****"
    return "…" + value[-4:]


def masked_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part, if any, replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", url, count=1)


@dataclass(frozen=True, repr=False)
class Profile:
    """One ``[profiles.NAME]`` table. Unset keys are None; ``prices`` falls back to the
    top-level table."""

    name: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = None
    project_id: str | None = None
    database_url: str | None = None
    source: str | None = None
    notify_command: str | None = None
    notify_webhook_env: str | None = None
    notify_webhook: str | None = None
    concurrency: int | None = None
    prices: PriceTable = field(default_factory=PriceTable)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "prices":
                continue
            if f.name in _SECRET_FIELDS:
                value = masked(value)
            elif f.name == "database_url":
                value = masked_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Profile({', '.join(shown)}, prices=<{len(self.prices)} entries>)"

    def resolve_api_key(
        self, explicit: str | None, environ: Mapping[str, str] | None = None
    ) -> str | None:
        """The token: ``explicit`` (``--api-key``), else ``$api_key_env``, else ``api_key``,
        else ``$FTLOG_API_KEY``, else ``$NEBIUS_API_KEY``; None when none is set.

        Raises :class:`AuthError` when this profile names a variable that is not set and has
        no ``api_key``: falling back to the global variables could send another API's token.
        """
        return resolve_api_key(self, explicit, environ)


def resolve_api_key(
    profile: Profile | None, explicit: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The token, in the one order every command uses: ``explicit`` (``--api-key``), else the
    profile's (see :meth:`Profile.resolve_api_key`), else ``$FTLOG_API_KEY``, else
    ``$NEBIUS_API_KEY``; None when none is set."""
    found = _api_key(profile, explicit, _environ(environ))
    if found.unset is not None:
        raise AuthError(f"no API key: {found.problem('the token')}")
    return found.value


@dataclass(frozen=True)
class Config:
    """A loaded config file; ``exists`` is False for a missing file at the default place."""

    path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)
    default_profile: str | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    exists: bool = True

    def profile(self, name: str | None) -> Profile | None:
        """The profile called ``name``; for None, the ``default_profile`` or None."""
        if name is None:
            name = self.default_profile
            if name is None:
                return None
        found = self.profiles.get(name)
        if found is not None:
            return found
        if not self.exists:
            raise UsageProblem(f"no profile {name!r}: the config file {self.path} does not exist")
        known = ", ".join(sorted(self.profiles)) if self.profiles else "it has none"
        raise UsageProblem(f"no profile {name!r} in {self.path} (profiles: {known})")


def config_location(
    explicit: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """The config file's path and where it came from: ``option``, ``env FTLOG_CONFIG`` or
    ``default``."""
    if explicit is not None:
        return explicit.expanduser(), "option"
    from_env = _env(_environ(environ), settings.CONFIG)
    if from_env is not None:
        return Path(from_env).expanduser(), f"env {settings.CONFIG}"
    return settings.default_config_path(), "default"


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """The config at ``path``, else ``$FTLOG_CONFIG``, else the default file (which may be
    missing: an empty config). Raises a one-line :class:`UsageProblem` for a missing named
    file, invalid TOML, an unknown key, a wrong type, or a secret in a file others can read.
    """
    location, where = config_location(path, environ)
    if where == "default" and not location.exists():
        return Config(location, exists=False)
    data, mode = _read(location, "config file")
    return _parse_config(location, data, mode)


def read_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """The decoded TOML file; one-line :class:`UsageProblem` when it is missing or invalid."""
    return _read(path, what)[0]


@dataclass(frozen=True)
class Setting:
    """One resolved setting: its value (None when unset), where it came from (``option``,
    ``env NAME``, ``profile NAME``, ``env NAME (profile NAME)``, ``config default_profile``,
    ``default``) and how ``ftlog config show`` prints it (secrets masked)."""

    value: str | None
    source: str
    shown: str
    problem: str | None = None
    """Why a profile's secret is missing: the variable it names is not set."""


@dataclass(frozen=True)
class Settings:
    """What every command that touches the store or the API uses, resolved once.

    Built by :func:`resolve_settings`; the CLI hands :meth:`option_defaults` to click and
    ``ftlog config show`` prints :meth:`rows`, so the two cannot disagree.
    """

    config: Config
    profile: Profile | None
    values: Mapping[str, Setting]
    """By setting name, in the order ``config show`` lists them."""
    prices: PriceTable
    """The profile's prices (looked up first), then the top-level table; empty: none."""

    def value(self, name: str) -> str | None:
        return self.values[name].value

    def option_defaults(self) -> dict[str, str]:
        """Click ``default_map`` entries, by parameter name, for every setting a command
        option takes: the environment, the profile or the built-in default, which click
        uses when the option is not on the command line. Secrets stay out except the
        webhook URL, which ``--notify-webhook`` takes."""
        return {
            parameter: value
            for name, parameter in _OPTION_PARAMETERS.items()
            if (value := self.value(name)) is not None
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """``(setting, shown value, source)`` for ``ftlog config show``."""
        return [(name, setting.shown, setting.source) for name, setting in self.values.items()]


_OPTION_PARAMETERS = {
    "base_url": "base_url",
    "project_id": "project_id",
    "database_url": "db_url",
    "source": "source",
    "notify_command": "notify_command",
    "notify_webhook": "notify_webhook",
    "concurrency": "concurrency",
}
"""Each setting a command option takes, and the option's parameter name."""


def load_prices(path: Path) -> PriceTable:
    """The ``[prices]`` table of a TOML file that holds only that (``--prices FILE``)."""
    data = read_toml(path)
    origin = str(path)
    for key in data:
        if key != "prices":
            raise UsageProblem(
                f"{origin}: unknown key {toml_key(key)!s}; a prices file holds only a [prices] "
                "table"
            )
    if "prices" not in data:
        raise UsageProblem(f"{origin}: no [prices] table")
    return PriceTable.from_toml(data["prices"], origin=origin)


def resolve_settings(
    config: Config,
    profile_name: str | None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, str | None] | None = None,
) -> Settings:
    """Every setting with its value and source, highest first: ``options`` (the command
    line, by setting name: ``config``, ``profile``, ``base_url``, ``api_key``,
    ``project_id``, ``database_url``, ``source``, ``notify_command``, ``notify_webhook``),
    the environment, the profile (``profile_name``, else the config's default_profile),
    the built-in default. The token and the webhook URL follow their own orders (see the
    module docs).
    """
    env = _environ(environ)
    given = {key: value for key, value in (options or {}).items() if value is not None}
    profile = config.profile(profile_name)
    values: dict[str, Setting] = {}

    path_source = (
        "option"
        if "config" in given
        else f"env {settings.CONFIG}"
        if _env(env, settings.CONFIG) is not None
        else "default"
    )
    found = "" if config.exists else " (not found)"
    values["config"] = Setting(str(config.path), path_source, f"{config.path}{found}")

    if profile is None:
        values["profile"] = Setting(None, "default", "(none)")
    elif "profile" in given:
        values["profile"] = Setting(profile.name, "option", profile.name)
    elif profile_name is not None:
        from_env = _env(env, settings.PROFILE) == profile_name
        source = f"env {settings.PROFILE}" if from_env else "option"
        values["profile"] = Setting(profile.name, source, profile.name)
    else:
        values["profile"] = Setting(profile.name, "config default_profile", profile.name)

    def plain(name: str, default: str | None, shown_default: str = _NOT_SET) -> None:
        value, source = _plain_setting(name, profile, given, env)
        if value is None:
            value, source = default, "default"
        shown = shown_default if value is None else value
        if name == "database_url":
            shown = masked_url(shown)
        values[name] = Setting(value, source, shown)

    def secret(name: str, what: str, found: _Secret) -> None:
        problem = found.problem(what) if found.unset is not None else None
        values[name] = Setting(found.value, found.source, found.shown(), problem)

    plain("base_url", settings.DEFAULT_BASE_URL)
    secret("api_key", "the token", _api_key(profile, given.get("api_key"), env))
    plain("project_id", None)
    plain("database_url", settings.default_database_url())
    plain("source", None, "(the API host)")
    plain("notify_command", None)
    secret("notify_webhook", "the webhook URL", _webhook(profile, given.get("notify_webhook"), env))
    plain("concurrency", str(settings.DEFAULT_CONCURRENCY))

    prices = profile.prices if profile is not None else config.prices
    if profile is not None and profile.prices is not config.prices:
        prices_source = f"profile {profile.name}"
    else:
        prices_source = "config" if prices else "default"
    shown = f"{len(prices)} entries" if prices else "(none)"
    values["prices"] = Setting(shown if prices else None, prices_source, shown)
    return Settings(config, profile, values, prices)


# -- resolution ------------------------------------------------------------------------------


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """As :func:`ftlog.settings.env`: the value, or None when unset or blank."""
    value = environ.get(name, "").strip()
    return value or None


class _Secret(NamedTuple):
    value: str | None
    source: str
    """``option``, ``env NAME``, ``env NAME (profile P)``, ``profile P`` or ``default``."""
    unset: str | None = None
    """The variable the profile reads it from, when that is not set (and value is None)."""

    def problem(self, what: str) -> str:
        return f"{self.source} reads {what} from ${self.unset}, which is not set"

    def shown(self) -> str:
        if self.value is not None:
            return masked(self.value)
        return f"(not set: ${self.unset} is unset)" if self.unset else _NOT_SET


def _secret(
    explicit: str | None,
    profile: Profile | None,
    env_name: str | None,
    plain: str | None,
    environ: Mapping[str, str],
    fallback_variables: tuple[str, ...] = (),
) -> _Secret:
    """``explicit``, else the profile's variable, else its plain value, else the first of
    ``fallback_variables`` that is set, unless the profile names a variable that is unset."""
    if explicit is not None and explicit.strip():
        return _Secret(explicit.strip(), "option")
    if profile is not None:
        if env_name is not None:
            value = _env(environ, env_name)
            if value is not None:
                return _Secret(value, f"env {env_name} (profile {profile.name})")
        if plain is not None:
            return _Secret(plain, f"profile {profile.name}")
        if env_name is not None:
            return _Secret(None, f"profile {profile.name}", unset=env_name)
    for name in fallback_variables:
        value = _env(environ, name)
        if value is not None:
            return _Secret(value, f"env {name}")
    return _Secret(None, "default")


def _api_key(profile: Profile | None, explicit: str | None, environ: Mapping[str, str]) -> _Secret:
    env_name, plain = (profile.api_key_env, profile.api_key) if profile else (None, None)
    return _secret(explicit, profile, env_name, plain, environ, settings.API_KEY_VARIABLES)


def _webhook(profile: Profile | None, explicit: str | None, environ: Mapping[str, str]) -> _Secret:
    """As click resolves ``--notify-webhook``: the option, its variable, then the profile."""
    from_env = _env(environ, settings.NOTIFY_WEBHOOK)
    if (explicit is None or not explicit.strip()) and from_env is not None:
        return _Secret(from_env, f"env {settings.NOTIFY_WEBHOOK}")
    env_name, plain = (
        (profile.notify_webhook_env, profile.notify_webhook) if profile else (None, None)
    )
    return _secret(explicit, profile, env_name, plain, environ)


def _plain_setting(
    name: str, profile: Profile | None, given: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[str | None, str]:
    if name in given:
        return given[name], "option"
    envvar = settings.OPTION_VARIABLES.get(name)
    if envvar is not None:
        value = _env(environ, envvar)
        if value is not None:
            return value, f"env {envvar}"
    if profile is not None:
        value = getattr(profile, name)
        if value is not None:
            return str(value), f"profile {profile.name}"
    return None, "default"


# -- reading and checking --------------------------------------------------------------------


def _read(path: Path, what: str) -> tuple[dict[str, Any], int]:
    """The decoded TOML and the file's mode (from the open file, not a second lookup)."""
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise UsageProblem(f"the {what} {path} is a directory")
            content = file.read()
    except FileNotFoundError:
        raise UsageProblem(f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageProblem(f"the {what} {path} is a directory") from None
    except OSError as err:
        raise UsageProblem(f"cannot read the {what} {path}: {err.strerror or err}") from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        line = content[: err.start].count(b"\n") + 1
        raise UsageProblem(f"{path}: invalid TOML: not UTF-8 text (line {line})") from None
    try:
        return tomllib.loads(text), mode
    except tomllib.TOMLDecodeError as err:
        message = str(err).replace(
            "(at end of document)", f"(at the end, line {text.count(chr(10)) + 1})"
        )
        raise UsageProblem(f"{path}: invalid TOML: {message}") from None


def _parse_config(path: Path, data: dict[str, Any], mode: int) -> Config:
    origin = str(path)
    _check_keys(origin, "", data, _TOP_KEYS)
    default_profile = data.get("default_profile")
    if default_profile is not None:
        default_profile = _string(origin, "default_profile", default_profile)
    prices = (
        PriceTable.from_toml(data["prices"], origin=origin) if "prices" in data else PriceTable()
    )
    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise UsageProblem(f"{origin}: profiles must be a table of [profiles.NAME] tables")
    profiles = {
        name: _parse_profile(origin, name, raw, prices) for name, raw in raw_profiles.items()
    }
    if default_profile is not None and default_profile not in profiles:
        known = ", ".join(sorted(profiles)) if profiles else "there are none"
        raise UsageProblem(
            f"{origin}: default_profile {default_profile!r} is not a profile (profiles: {known})"
        )
    _check_private(path, mode, profiles)
    return Config(path, profiles, default_profile, prices)


def _parse_profile(origin: str, name: str, raw: Any, prices: PriceTable) -> Profile:
    where = f"profiles.{toml_key(name)}"
    if not name.strip():
        raise UsageProblem(f"{origin}: a profile name must not be empty")
    if not isinstance(raw, dict):
        raise UsageProblem(f"{origin}: {where} must be a table ([{where}])")
    _check_keys(origin, f"{where}.", raw, _PROFILE_KEYS)
    values: dict[str, Any] = {
        key: _string(origin, f"{where}.{key}", raw[key]) for key in _PROFILE_STRINGS if key in raw
    }
    for key, bounds in _PROFILE_INTEGERS.items():
        if key in raw:
            values[key] = _integer(origin, f"{where}.{key}", raw[key], bounds)
    for key in ("api_key_env", "notify_webhook_env"):
        if key in values and not _ENV_NAME.fullmatch(values[key]):
            # Not echoed: it may be the secret itself, pasted in the wrong key.
            raise UsageProblem(
                f"{origin}: {where}.{key} must be the NAME of an environment variable "
                "(such as NEBIUS_API_KEY), not its value"
            )
    base_url = values.get("base_url")
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageProblem(
                f"{origin}: {where}.base_url must be an http(s) URL, not {base_url!r}"
            )
    own_prices = (
        PriceTable.from_toml(raw["prices"], origin=origin, key=f"{where}.prices").with_fallback(
            prices
        )
        if "prices" in raw
        else prices
    )
    return Profile(name=name, prices=own_prices, **values)


def _check_keys(origin: str, prefix: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        raise UsageProblem(f"{origin}: unknown key {prefix}{toml_key(key)} ({hint})")


def _integer(origin: str, where: str, value: Any, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageProblem(
            f"{origin}: {where} must be a whole number from {low} to {high}, not {value!r}"
        )
    return value


def _string(origin: str, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UsageProblem(f"{origin}: {where} must be a string, not {toml_kind(value)}")
    if not value.strip():
        raise UsageProblem(f"{origin}: {where} must not be empty")
    return value.strip()


def _check_private(path: Path, mode: int, profiles: Mapping[str, Profile]) -> None:
    """Secrets written in the file need a file only its owner can read."""
    if os.name != "posix" or not mode & 0o077:
        return
    for profile in profiles.values():
        where = f"profiles.{toml_key(profile.name)}"
        plain = [
            (key, alternative)
            for key, alternative in (
                ("api_key", "api_key_env"),
                ("notify_webhook", "notify_webhook_env"),
            )
            if getattr(profile, key) is not None
        ]
        if profile.database_url is not None and masked_url(profile.database_url) != (
            profile.database_url
        ):
            plain.append(("database_url", "a password file such as ~/.pgpass"))
        if plain:
            key, alternative = plain[0]
            raise UsageProblem(
                f"{path} holds a secret in {where}.{key} but others can read it (mode "
                f"{stat.S_IMODE(mode):o}): run chmod 600 {path}, or use {alternative}"
            )
