"""The sinch_* mitmproxy options, checked by the rows of the settings table.

`configure` reads each option through `option()`; `load` looks at the values mitmdump holds
back for options not declared yet (`refuse_deferred`), so that a bad `--set sinch_…=…` is one
error line instead of a silent default or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx, exceptions, optmanager

from sinch_sms_exporter import settings
from sinch_sms_exporter.exposition import WebConfig


def checked_option(name: str, value: Any) -> Any:
    """A sinch_* option's value as the code uses it (seconds, buckets, a pattern, a web
    config), by its row's check; else ValueError with the one line `name=value: reason` (for
    a list: the bad item). The web config's contents are checked here, not in the table:
    reading them needs the exposition module."""
    setting = settings.OPTIONS[name]
    used = []
    for item in value if setting.repeated else [value]:
        try:
            used.append(setting.check(item))
        except ValueError as exc:
            raise ValueError(settings.message(name, item, str(exc))) from None
    if name == "sinch_metrics_web_config":
        try:
            return WebConfig.load(used[0])
        except (ValueError, OSError) as exc:  # a YAML error spans lines: one line here
            raise ValueError(settings.message(name, value, " ".join(str(exc).split()))) from None
    return used if setting.repeated else used[0]


def option(name: str) -> Any:
    """checked_option for configure: a bad value is an OptionsError (mitmproxy then keeps
    the previous value)."""
    try:
        return checked_option(name, getattr(ctx.options, name))
    except ValueError as exc:
        raise exceptions.OptionsError(str(exc)) from None


def _wrong_type(setting: settings.Setting, value: Any) -> str | None:
    """Why a config.yaml value cannot be the option's (mitmproxy would refuse it with a
    traceback), or None."""
    if setting.repeated:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return None if ok else "needs a list of strings"
    if setting.kind is int:
        return None if type(value) is int else "not a whole number"
    if setting.kind is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if value is None and setting.kind == settings.OptionalStr:
        return None
    return None if isinstance(value, str) else "needs a string"


def deferred_problem(name: str, value: Any) -> str | None:
    """What is wrong with a value mitmproxy holds for an option not declared yet: text from
    `--set` (a list of strings, converted here as mitmproxy will) or a value from config.yaml."""
    setting = settings.OPTIONS[name]
    texts = getattr(value, "val", None)  # mitmproxy's _UnconvertedStrings
    try:
        if texts is None:  # from config.yaml: typed by YAML, not by mitmproxy
            wrong = _wrong_type(setting, value)
            if wrong:
                return settings.message(name, value, wrong)
            checked_option(name, value)
        elif setting.repeated:
            checked_option(name, list(texts))
        elif len(texts) != 1:
            if texts or setting.kind != settings.OptionalStr:  # `--set name` alone: None
                return settings.message(name, " ".join(texts), "needs exactly one value")
        else:
            try:
                converted = setting.convert(texts[0])
            except ValueError as exc:
                return settings.message(name, texts[0], str(exc))
            checked_option(name, converted)
    except ValueError as exc:
        return str(exc)
    return None


def refuse_deferred(options: optmanager.OptManager, logger: logging.Logger) -> bool:
    """Check the sinch_* values mitmdump holds back until an addon declares them; True when
    one was refused.

    `mitmdump -s … --set sinch_code_cap=abc` keeps the text aside (`deferred`) and converts
    it when `load` has declared the option, right after this. A text mitmproxy cannot
    convert would raise there, out of the script loader, and the script would be left
    half-loaded with no word; a value configure refuses would end as a traceback. Instead,
    each bad value (and each sinch_* name no row declares) is one error line here, and is
    dropped: mitmproxy's errorcheck then ends the startup with status 1."""
    refused = False
    deferred: dict[str, Any] = getattr(options, "deferred", {})
    for name in sorted(k for k in deferred if k.startswith("sinch_")):
        if name not in settings.OPTIONS:
            close = settings.closest(name, settings.OPTIONS, "sinch_")
            hint = f" (did you mean {close}?)" if close else ""
            problem: str | None = f"unknown option {name}{hint}"
        else:
            problem = deferred_problem(name, deferred[name])
        if problem:
            logger.error(problem)
            refused = True
            del deferred[name]
    return refused
