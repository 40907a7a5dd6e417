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
``notify_webhook`` (strings) and ``prices`` (a table). Unknown keys and wrong types are
errors naming the key and the file, so a typo never goes unnoticed. Prices and how a model
finds its price: :mod:`ftlog.pricing`; a profile's ``prices`` are looked up first, then the
top-level ``[prices]``.

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

Commands get 3 through click's ``ctx.default_map`` (:meth:`Profile.option_defaults`), which
click consults after the command line and the option's ``envvar`` and before the default.

The token is the exception, because a profile says *which* variable holds its token:
``--api-key``, else the variable named by the profile's ``api_key_env``, else the profile's
``api_key``, else ``$FTLOG_API_KEY``, else ``$NEBIUS_API_KEY``. A profile that names a variable
which is not set (and has no ``api_key``) is an error rather than a silent fall back to
another token. The webhook URL: ``--notify-webhook``, ``$FTLOG_NOTIFY_WEBHOOK``, the variable
named by ``notify_webhook_env``, then ``notify_webhook``.
"""

from __future__ import annotations

import difflib
import logging
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
from ftlog.pricing import PriceTable, toml_key

logger = logging.getLogger("ftlog.config")

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
_PROFILE_KEYS = (*_PROFILE_STRINGS, "prices")
_SECRET_FIELDS = frozenset({"api_key", "notify_webhook"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)(?P<password>[^/@]*)@")
_MASK_MIN_LENGTH = 16
_NOT_SET = "(not set)"

OPTION_ENVVARS: Mapping[str, str] = {
    "base_url": settings.BASE_URL,
    "database_url": settings.DATABASE_URL,
    "notify_webhook": settings.NOTIFY_WEBHOOK,
}
"""The settings a command option also reads from an environment variable (click ``envvar``).
Keep it in step with the options' ``envvar``: ``config show`` reports sources from it."""


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

    def option_defaults(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Defaults for ``ctx.default_map`` of ``snapshot``, ``ingest`` and ``watch``, by
        parameter name; only the settings this profile has.

        ``notify_webhook`` is resolved from ``notify_webhook_env`` (in ``environ``, default
        ``os.environ``), else ``notify_webhook``; a named variable that is not set leaves it
        out, with a warning (unless ``$FTLOG_NOTIFY_WEBHOOK``, which click prefers, is set).
        """
        defaults = {
            "base_url": self.base_url,
            "project_id": self.project_id,
            "source": self.source,
            "db_url": self.database_url,
            "notify_command": self.notify_command,
        }
        env = _environ(environ)
        webhook = _secret(None, self, self.notify_webhook_env, self.notify_webhook, env)
        if webhook.value is not None:
            defaults["notify_webhook"] = webhook.value
        elif webhook.unset is not None and _env(env, settings.NOTIFY_WEBHOOK) is None:
            logger.warning("%s; no webhook notifications", webhook.problem("the webhook URL"))
        return {key: value for key, value in defaults.items() if value is not None}

    def resolve_api_key(
        self, explicit: str | None, environ: Mapping[str, str] | None = None
    ) -> str | None:
        """The token: ``explicit`` (``--api-key``), else ``$api_key_env``, else ``api_key``,
        else ``$FTLOG_API_KEY``, else ``$NEBIUS_API_KEY``; None when none is set.

        Raises :class:`AuthError` when this profile names a variable that is not set and has
        no ``api_key``: falling back to the global variables could send another API's token.
        """
        found = _api_key(self, explicit, _environ(environ))
        if found.unset is not None:
            raise AuthError(f"no API key: {found.problem('the token')}")
        return found.value

    def resolve_notify_webhook(
        self, explicit: str | None, environ: Mapping[str, str] | None = None
    ) -> str | None:
        """The webhook URL: ``explicit`` (``--notify-webhook``), else
        ``$FTLOG_NOTIFY_WEBHOOK``, else ``$notify_webhook_env``, else ``notify_webhook``;
        None when none is set.

        Raises :class:`UsageProblem` when the profile names a variable that is not set.
        """
        found = _webhook(self, explicit, _environ(environ))
        if found.unset is not None:
            raise UsageProblem(f"no webhook URL: {found.problem('it')}")
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


def resolved_settings(
    config: Config,
    profile_name: str | None,
    environ: Mapping[str, str],
    options: Mapping[str, str | None] | None = None,
) -> list[tuple[str, str, str]]:
    """``(setting, value, source)`` rows for ``ftlog config show``, secrets masked.

    ``options`` holds the values given on the command line, by setting name (``config``,
    ``profile``, ``base_url``, ``api_key``, ``project_id``, ``database_url``, ``source``,
    ``notify_command``, ``notify_webhook``). Sources: ``option``, ``env NAME``,
    ``profile NAME``, ``env NAME (profile NAME)``, ``config default_profile``, ``default``.
    """
    given = {key: value for key, value in (options or {}).items() if value is not None}
    profile = config.profile(profile_name)
    rows: list[tuple[str, str, str]] = []

    path_source = (
        "option"
        if "config" in given
        else f"env {settings.CONFIG}"
        if _env(environ, settings.CONFIG) is not None
        else "default"
    )
    found = "" if config.exists else " (not found)"
    rows.append(("config", f"{config.path}{found}", path_source))

    if profile is None:
        rows.append(("profile", "(none)", "default"))
    elif "profile" in given:
        rows.append(("profile", profile.name, "option"))
    elif profile_name is not None:
        from_env = _env(environ, settings.PROFILE) == profile_name
        rows.append(("profile", profile.name, f"env {settings.PROFILE}" if from_env else "option"))
    else:
        rows.append(("profile", profile.name, "config default_profile"))

    def plain(name: str, default: str) -> None:
        value, source = _plain_setting(name, profile, given, environ)
        if value is None:
            value, source = default, "default"
        rows.append((name, masked_url(value) if name == "database_url" else value, source))

    plain("base_url", settings.DEFAULT_BASE_URL)
    key = _api_key(profile, given.get("api_key"), environ)
    rows.append(("api_key", key.shown(), key.source))
    plain("project_id", _NOT_SET)
    plain("database_url", f"sqlite:///{settings.default_database_path()}")
    plain("source", "(the API host)")
    plain("notify_command", _NOT_SET)

    webhook = _webhook(profile, given.get("notify_webhook"), environ)
    rows.append(("notify_webhook", webhook.shown(), webhook.source))

    prices = profile.prices if profile is not None else config.prices
    if profile is not None and profile.prices is not config.prices:
        prices_source = f"profile {profile.name}"
    else:
        prices_source = "config" if prices else "default"
    rows.append(("prices", f"{len(prices)} entries" if prices else "(none)", prices_source))
    return rows


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
    envvar = OPTION_ENVVARS.get(name)
    if envvar is not None:
        value = _env(environ, envvar)
        if value is not None:
            return value, f"env {envvar}"
    if profile is not None:
        value = getattr(profile, name)
        if value is not None:
            return value, f"profile {profile.name}"
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
    values = {
        key: _string(origin, f"{where}.{key}", raw[key]) for key in _PROFILE_STRINGS if key in raw
    }
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


def _string(origin: str, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UsageProblem(f"{origin}: {where} must be a string, not {_kind(value)}")
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


def _kind(value: Any) -> str:
    names = {dict: "a table", list: "an array", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a date/time")
