"""Configuration: declared keys, YAML files, ``COMFYKIT_*`` variables, and where each value came from.

Precedence, highest first: explicit arguments > environment variables >
config file > defaults.  Which file, and how it is read, is
:mod:`comfykit.config_files` (``find_config_file`` and ``read_config_file``
stay importable from here).

Every key is declared in a :class:`ConfigRegistry` (core keys here, plugin
keys through the ``comfykit_add_config`` hook) with its default, type and
help, so unknown keys can be reported with the closest valid one, and values
are checked and converted with errors that name the file, line and key.
The types a key may declare are :mod:`comfykit.config_types`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

import attrs

from comfykit.config_files import find_config_file, read_config_file
from comfykit.config_types import CONVERTERS, ConfigType, guess_type
from comfykit.errors import ConfigError
from comfykit.secrets import MASK, SECRET_NAME, SecretMask, secrets_of

__all__ = [
    "Config",
    "ConfigKey",
    "ConfigRegistry",
    "ConfigSource",
    "ConfigWarning",
    "core_registry",
    "find_config_file",
    "load_config",
    "read_config_file",
]

log = logging.getLogger("comfykit.config")

ENV_PREFIX = "COMFYKIT_"


class ConfigWarning(UserWarning):
    """Kept for code that filters it; config problems that do not stop comfykit are logged on ``comfykit.config``."""


@attrs.frozen
class ConfigKey:
    """One declared configuration key."""

    section: str
    key: str
    default: Any
    type: ConfigType = "any"
    help: str = ""
    nullable: bool = True
    secret: bool = False
    env: str | None = None
    #: the plugin that declared it (``None``: comfykit's core); not part of its identity
    owner: str | None = attrs.field(default=None, eq=False)

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def env_var(self) -> str:
        if self.env:
            return self.env
        return ENV_PREFIX + self.dotted.replace(".", "_").upper()

    def convert(self, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        return CONVERTERS[self.type](value)


class ConfigRegistry:
    """The set of keys comfykit and its plugins understand."""

    def __init__(self) -> None:
        self._keys: dict[str, ConfigKey] = {}
        #: Plugins switched off where this registry was built: a key none of the
        #: loaded code declares may be one of theirs (see :meth:`unknown_key_message`).
        self.disabled_plugins: frozenset[str] = frozenset()
        #: sections named after a disabled plugin, and keys a disabled bundled plugin
        #: declares: a config file may keep them, and they are skipped quietly
        self.disabled_sections: frozenset[str] = frozenset()
        self.disabled_keys: frozenset[str] = frozenset()
        #: the plugin declaring keys right now (set by the plugin manager), recorded as their owner
        self.declaring: str | None = None

    def copy(self) -> ConfigRegistry:
        """A registry with the same keys, to declare into and :meth:`update` from when that worked."""
        twin = ConfigRegistry()
        twin._keys = dict(self._keys)
        twin.disabled_plugins = self.disabled_plugins
        twin.disabled_sections = self.disabled_sections
        twin.disabled_keys = self.disabled_keys
        return twin

    def update(self, other: ConfigRegistry) -> None:
        """Take every key of ``other`` (a :meth:`copy` of this registry a plugin declared into)."""
        self._keys.update(other._keys)

    def belongs_to_disabled_plugin(self, dotted: str) -> bool:
        """Whether ``dotted`` is a disabled plugin's key: one a disabled bundled plugin declares, or in its section."""
        return dotted in self.disabled_keys or dotted.partition(".")[0] in self.disabled_sections

    def add(
        self,
        section: str,
        key: str,
        default: Any,
        *,
        type: ConfigType | None = None,
        help: str = "",
        nullable: bool | None = None,
        secret: bool = False,
        env: str | None = None,
    ) -> ConfigKey:
        """Declare ``section.key`` with its default; the type is guessed from the default if not given."""
        if type is None:
            type = guess_type(default)
        if type not in get_args(ConfigType):  # callers without mypy can still pass any text
            raise ConfigError(
                f"unknown config type {type!r} for {section}.{key}",
                key=f"{section}.{key}", hint=f"Use one of: {', '.join(get_args(ConfigType))}.",
            )
        declared = ConfigKey(
            section=section,
            key=key,
            default=default,
            type=type,
            help=help,
            nullable=default is None if nullable is None else nullable,
            secret=secret,
            env=env,
            owner=self.declaring,
        )
        existing = self._keys.get(declared.dotted)
        if existing is not None and existing != declared:
            first = existing.owner or "comfykit"
            raise ConfigError(f"config key {declared.dotted} is declared twice with different settings "
                              f"(first by {first})", key=declared.dotted,
                              hint="A plugin declares only its own keys, or a shared key exactly as its owner does.")
        self._keys[declared.dotted] = declared
        return declared

    def __contains__(self, dotted: object) -> bool:
        return dotted in self._keys

    def __iter__(self) -> Iterator[ConfigKey]:
        return iter(self._keys.values())

    def get(self, dotted: str) -> ConfigKey | None:
        return self._keys.get(dotted)

    def sections(self) -> list[str]:
        return sorted({k.section for k in self._keys.values()})

    def keys_in(self, section: str) -> list[ConfigKey]:
        return [k for k in self._keys.values() if k.section == section]

    def unknown_key_message(self, dotted: str) -> str:
        """Why ``dotted`` is not accepted: a disabled plugin may own it, or the closest key declared."""
        if self.disabled_plugins:
            names = ", ".join(sorted(self.disabled_plugins))
            return (
                f"config key {dotted!r} is not declared by comfykit or any loaded plugin, so it is ignored; "
                f"it may belong to a disabled plugin ({names})"
            )
        hint = _closest(dotted, self)
        return f"unknown config key {dotted!r}" + (f"; {hint}" if hint else "")


def core_registry() -> ConfigRegistry:
    """The keys of comfykit's core (plugins add theirs through ``comfykit_add_config``)."""
    r = ConfigRegistry()
    # comfyui: where the server is and how to talk to it
    r.add("comfyui", "host", "127.0.0.1", help="Server host name or address.")
    r.add("comfyui", "port", 8188, help="Server port.")
    r.add("comfyui", "protocol", "http", help="http or https.")
    r.add("comfyui", "url", None, type="str", env="COMFYKIT_URL",
          help="Full base URL, including a path behind a reverse proxy; overrides host/port/protocol.")
    r.add("comfyui", "timeout", 300.0, type="float", help="Seconds to wait for one HTTP answer.")
    r.add("comfyui", "connect_timeout", 10.0, type="float", help="Seconds to wait for a TCP connection.")
    r.add("comfyui", "token", None, type="str", secret=True, help="Bearer token sent as Authorization.")
    r.add("comfyui", "username", None, type="str", help="User name for HTTP basic auth.")
    r.add("comfyui", "password", None, type="str", secret=True, help="Password for HTTP basic auth.")
    r.add("comfyui", "api_key", None, type="str", secret=True,
          help="comfy.org API key for API nodes, sent in extra_data as api_key_comfy_org.")
    r.add("comfyui", "verify", True, help="Verify TLS certificates.")
    r.add("comfyui", "ca_bundle", None, type="str", help="Path to a CA bundle for TLS verification.")
    r.add("comfyui", "headers", {}, type="mapping", help="Extra HTTP headers sent with every request.")
    # websocket.poll_interval is core's (the polling source and the tracker read it);
    # the other websocket.* keys are the monitor plugin's.
    r.add("websocket", "poll_interval", 0.05, type="float", help="First polling interval when polling.")
    # workflow
    r.add("workflow", "validate_before_send", True, help="Validate workflows before sending them.")
    r.add("workflow", "auto_queue", True, help="Accepted for configs written for the original tool; has no effect "
          "(comfykit queues exactly what send, batch or add_job is given).")
    r.add("workflow", "templates_dir", "templates", help="Where named templates are looked up.")
    r.add("workflow", "object_info", None, type="str",
          help="Saved /object_info JSON used for offline schema validation and conversion.")
    # output: what every sink shares (each sink declares its own keys)
    r.add("output", "output_dir", "./outputs", help="Folder the output sinks write under.")
    r.add("output", "sinks", None, type="names", help="Names of the output sinks to run (default: all).")
    r.add("output", "include_temp", False, help="Also report and store temp/preview outputs.")
    r.add("output", "fsync", None, type="bool",
          help="Flush each stored file to disk before it takes its name: unset, only in a batch with a journal "
               "(which must not record outputs a power loss could take); true, always; false, never. "
               "Unflushed files are still atomic; a power loss may leave the newest ones empty. "
               "About 0.25 ms CPU per file on the development VM.")
    # batch
    r.add("batch", "max_concurrent", 3, help="Jobs in flight per server.")
    r.add("batch", "retry_on_failure", True, help="Retry failed jobs.")
    r.add("batch", "max_retries", 3, help="Retries per job.")
    r.add("batch", "timeout", None, type="float", help="Seconds a job may take before it fails.")
    r.add("batch", "journal", None, type="str",
          help="Journal that makes a batch resumable: an SQLite file, or postgresql://user@host/db?batch=NAME.")
    r.add("batch", "lease_seconds", 30.0, type="float",
          help="With a PostgreSQL journal: how long a coordinator's claim on a job lasts without its heartbeat.")
    r.add("batch", "retry_delay", 1.0, type="float", help="First retry delay in seconds.")
    r.add("batch", "retry_delay_max", 60.0, type="float", help="Longest retry delay in seconds.")
    r.add("batch", "down_timeout", 60.0, type="float",
          help="Seconds an unreachable server keeps its jobs before they move to another server.")
    r.add("batch", "health_interval", 2.0, type="float", help="Seconds between checks of an unreachable server.")
    r.add("batch", "poll_interval", 0.25, type="float",
          help="Seconds between server checks for jobs whose events cannot arrive (polling, resumed jobs).")
    # plugins
    r.add("plugins", "disable", [], type="names", help="Plugins not to load, by name.")
    r.add("plugins", "enable", [], type="names", help="Extra plugin modules to load.")
    r.add("plugins", "strict", False, help="Fail when a plugin cannot be loaded.")
    r.add("plugins", "autoload", True, help="Load third-party plugins from entry points.")
    # top-level: a pool of servers
    r.add("", "servers", [], type="list", env="COMFYKIT_SERVERS",
          help="Server pool: URLs, or mappings with url, weight and max_concurrent.")
    return r


@attrs.frozen
class ConfigSource:
    """Where one value came from: ``default``, ``file``, ``env`` or ``argument``."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


class Config(Mapping[str, Any]):
    """The effective configuration: ``config["output.output_dir"]``, ``config.section("output")``."""

    def __init__(
        self,
        values: Mapping[str, Any],
        sources: Mapping[str, ConfigSource],
        registry: ConfigRegistry,
        path: Path | None = None,
    ) -> None:
        self._values = dict(values)
        self._sources = dict(sources)
        self.registry = registry
        self.path = path

    def __getitem__(self, dotted: str) -> Any:
        return self._values[dotted]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def section(self, name: str) -> dict[str, Any]:
        """Every value of one section as a plain dict (keys without the section prefix)."""
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self._values.items() if k.startswith(prefix)}

    def source(self, dotted: str) -> ConfigSource:
        return self._sources.get(dotted, ConfigSource("default"))

    def secret_keys(self) -> list[str]:
        """The dotted keys whose values are credentials."""
        return [key.dotted for key in self.registry if key.secret]

    def redacted(self) -> dict[str, Any]:
        """Values with every credential replaced by ``"***"``: secret keys, header values, passwords in URLs."""
        mask = SecretMask(secrets_of(self._values, self.secret_keys()))
        shown: dict[str, Any] = {}
        for dotted, value in self._values.items():
            key = self.registry.get(dotted)
            if key is not None and key.secret and value:
                shown[dotted] = MASK
            elif dotted == "comfyui.headers" and isinstance(value, Mapping):
                shown[dotted] = {name: MASK for name in value}
            else:
                shown[dotted] = mask.data(value)
        return shown

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with explicit arguments applied on top (checked like any other value)."""
        values = dict(self._values)
        sources = dict(self._sources)
        for dotted, value in overrides.items():
            if value is None:
                continue
            declared = self.registry.get(dotted)
            if declared is None:
                raise ConfigError(f"unknown config key {dotted!r}", key=dotted, hint=_closest(dotted, self.registry))
            try:
                values[dotted] = declared.convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"bad value for {dotted}: {_shown_error(declared, exc)}", key=dotted)
            sources[dotted] = ConfigSource("argument")
        return Config(values, sources, self.registry, self.path)


def _shown_error(declared: ConfigKey, exc: Exception) -> str:
    """The converter's complaint, unless it would quote a credential: then only what was expected."""
    if declared.secret or SECRET_NAME.search(declared.key) or declared.dotted == "comfyui.headers":
        return f"expected a {declared.type} (the value is not shown: it may be a credential)"
    return str(exc)


def _closest(dotted: str, registry: ConfigRegistry) -> str | None:
    names = [k.dotted for k in registry]
    match = difflib.get_close_matches(dotted, names, n=1, cutoff=0.5)
    if not match and "." in dotted:
        section, _, key = dotted.partition(".")
        keys = [k.key for k in registry.keys_in(section)]
        near = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
        match = [f"{section}.{near[0]}"] if near else []
    return f"Did you mean {match[0]!r}?" if match else None


def load_config(
    *,
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: ConfigRegistry | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    use_file: bool = True,
    warn_unknown: bool = True,
) -> Config:
    """Merge defaults, the config file, ``COMFYKIT_*`` variables and ``overrides`` into a :class:`Config`.

    :param path: an explicit config file (else the search described in the module docstring).
    :param overrides: dotted keys set by explicit arguments; ``None`` values are ignored.
    :param registry: the declared keys; default: core's and those of the plugins a
        session started with this config loads (its ``plugins.*`` keys decide which).
    :param env: the environment to read (default: ``os.environ``).
    :param use_file: ``False`` skips the file search (explicit ``path`` still counts).
    :param warn_unknown: warn about keys ``registry`` does not declare; off for a first
        pass that only decides which plugins load (they declare more keys).
    """
    if registry is None:
        first = load_config(path=path, registry=core_registry(), env=env, cwd=cwd, use_file=use_file, warn_unknown=False)
        registry = _session_registry(first)
    environ = os.environ if env is None else env
    values: dict[str, Any] = {k.dotted: k.default for k in registry}
    sources: dict[str, ConfigSource] = {}

    config_path: Path | None = None
    if path is not None or use_file:
        config_path = find_config_file(path, cwd=cwd, env=environ)
    if config_path is not None:
        flat, lines = read_config_file(config_path)
        for dotted, value in flat.items():
            declared = registry.get(dotted)
            line = lines.get(dotted)
            if declared is None:
                if not warn_unknown:
                    continue
                if registry.belongs_to_disabled_plugin(dotted):
                    log.debug("%s:%s: %s belongs to a disabled plugin; not read", config_path, line, dotted)
                    continue
                log.warning("%s:%s: %s", config_path, line, registry.unknown_key_message(dotted))
                continue
            try:
                values[dotted] = declared.convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"bad value for {dotted}: {_shown_error(declared, exc)}",
                    path=str(config_path),
                    key=dotted,
                    line=line,
                    hint=declared.help or None,
                )
            sources[dotted] = ConfigSource("file", f"{config_path}:{line}" if line else str(config_path))

    for declared in registry:
        raw = environ.get(declared.env_var)
        if raw is None:
            continue
        try:
            values[declared.dotted] = declared.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"bad value in ${declared.env_var} for {declared.dotted}: {_shown_error(declared, exc)}",
                key=declared.dotted,
            )
        sources[declared.dotted] = ConfigSource("env", declared.env_var)

    config = Config(values, sources, registry, config_path)
    if overrides:
        config = config.with_overrides(overrides)
    return config


def _session_registry(first: Config) -> ConfigRegistry:
    """Core's keys plus those declared by the plugins that ``first``'s ``plugins.*`` keys load.

    Plugins declare their own keys (``comfykit_add_config``), so a config read on
    its own needs the plugin manager a session would build; this is the one place
    the config layer reaches up to the plugin layer, at run time and on purpose.
    """
    from comfykit.plugin_loader import get_plugin_manager

    manager = get_plugin_manager(
        enable=first["plugins.enable"], disable=first["plugins.disable"],
        autoload=None if first["plugins.autoload"] else False, warn_unmatched=False,
    )
    registry = core_registry()
    manager.add_config(registry)
    return registry
