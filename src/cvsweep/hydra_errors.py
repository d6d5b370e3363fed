"""A command line Hydra rejects, said in one paragraph.

Hydra reports a rejected override over several paragraphs: the override, a hint, OmegaConf's
key/type block and, for an unknown option, the whole config search path. For a misspelled key
its hint is to add the key with `+`, which cvsweep then rejects as unknown; and in a sweep
only the first line reached the user, without the reason (`Error merging override ...`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .config import OPTIMIZER_SCHEMAS, one_paragraph

_SWITCH = "HYDRA_FULL_ERROR"  # Hydra raises errors instead of printing them where it is "1"
_switched_here = False


def raise_instead_of_printing() -> None:
    """Until the config is composed, let Hydra raise what it rejects, for `explain` to say.

    Left alone where the user set the switch (they asked for Hydra's full traceback).
    """
    global _switched_here
    if _SWITCH not in os.environ:
        os.environ[_SWITCH] = "1"
        _switched_here = True


def composed() -> None:
    """The config is composed: errors from here on are Hydra's to report, as before, and
    processes started from here (launcher workers) do not inherit the switch."""
    global _switched_here
    if _switched_here:
        os.environ.pop(_SWITCH, None)
        _switched_here = False


def raised_for_cvsweep() -> bool:
    """Did cvsweep (not the user) ask Hydra to raise its composition errors?"""
    return _switched_here


def explain(exc: BaseException) -> str:
    """One paragraph naming what is wrong on the command line and what would be right."""
    cause = exc.__cause__
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        return _unknown_option(exc)
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
        override = re.match(r"Could not override '([^']+)'", str(exc))
        return _unknown_key(cause, override.group(1) if override else str(cause.full_key))
    if isinstance(exc, OverrideParseException):
        first = str(exc).splitlines()[0]
        return f"Cannot read the override {exc.override!r}: {first} (Hydra's override syntax)."
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Error merging override ") and isinstance(cause, OmegaConfBaseException):
        override = text.removeprefix("Error merging override ")
        missing = _past_the_end(cause)
        if missing:
            return f"Invalid config key in {override}: {missing}."
        return f"Invalid config value {override}: {str(cause).splitlines()[0].rstrip('.')}."
    return one_paragraph(exc)


def _past_the_end(cause: OmegaConfBaseException) -> str | None:
    """`model.layers.9.x=...` on a 7-item list: OmegaConf's complaint is about types."""
    items = getattr(cause, "parent_node", None)
    index = getattr(cause, "key", None)
    if not isinstance(items, ListConfig) or not isinstance(index, int) or index < len(items):
        return None
    where = str(cause.full_key).rpartition("[")[0]
    return (
        f"{where} has {len(items)} item(s), {where}.0 to {where}.{len(items) - 1}, so there is no "
        f"{where}.{index}; to add one, give the whole list ({where}=[...])"
    )


def _unknown_option(exc: MissingConfigException) -> str:
    group, _, option = str(exc.missing_cfg_file).rpartition("/")
    options = [o for o in exc.options or [] if not o.endswith("_schema")]
    if not group:
        return one_paragraph(exc).split("; Config search path")[0]
    hint = _did_you_mean(option, options, group + "=")
    known = f"the options are {', '.join(options)}" if options else "it has no options"
    return f"Unknown option {group}={option}: {known}.{hint}"


def _unknown_key(cause: ConfigKeyError | ConfigAttributeError, full_key: str) -> str:
    parent, _, key = re.sub(r"\[(\d+)\]", r".\1", str(cause.full_key)).rpartition(".")
    schema = cause.object_type
    if schema is None or not dataclasses.is_dataclass(schema):
        # A free-form node (a phase's optimizer settings): it takes new keys, with `+`.
        node = getattr(cause, "parent_node", None)
        keys = ", ".join(str(k) for k in node) if isinstance(node, DictConfig) else ""
        return (
            f"Unknown config key {full_key}: {parent or 'the top level'} has "
            + (f"only {keys}" if keys else "no keys yet")
            + f"; add a new one with +{full_key}=VALUE."
        )
    valid = [f.name for f in dataclasses.fields(schema)]
    names = {cls: name for name, cls in OPTIMIZER_SCHEMAS.items()}
    if schema in names:
        where = f"the {names[schema]} optimizer has no setting {key!r}"
        listed = f"valid keys for {names[schema]}"
    else:
        where = f"{parent or 'the top level'} has no setting {key!r}"
        listed = "valid keys there"
    hint = _did_you_mean(key, valid, f"{parent}." if parent else "")
    return f"Unknown config key {full_key}: {where}; {listed}: {', '.join(valid)}.{hint}"


def _did_you_mean(word: str, choices: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {prefix}{close[0]}?" if close else ""
