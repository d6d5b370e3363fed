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
import shlex
import sys
from collections.abc import Iterable
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .config import OPTIMIZER_SCHEMAS, one_paragraph
from .identity import GROUPS

# Hydra's answer to `+optimizer=sgd`, in defaults-list syntax a command line cannot use.
_ADDED_GROUP = re.compile(
    r"Multiple values for (\S+)\. To override a value use 'override \S+: (.+)'"
)
# Hydra's answer to `optimizer=sgd,adam` without -m: its first advice, a list, merges options.
_SEVERAL_VALUES = re.compile(r"Ambiguous value for argument '(.+)'")
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


def list_of_options(overrides: Iterable[str]) -> str | None:
    """`augment=[flip,rotate]`: Hydra merges the options into one config, the last one's values
    winning, and the run says it trained `rotate`; `optimizer=[sgd,adam]` fails on the merge.
    Either way a sweep was meant. The value is read by Hydra's own override parser, so a sweep of
    lists (`augment=[flip],[rotate]`) is recognised and its options are named plainly."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or key.lstrip("+~") not in GROUPS or "[" not in item:
            continue
        try:
            parsed = OverridesParser.create().parse_overrides([item])[0]
        except HydraException:
            return None  # Hydra's own error says what is wrong with it
        value = parsed.value()
        values = value.list if isinstance(value, ChoiceSweep) else [value]
        lists = [v for v in values if isinstance(v, list)]
        if not lists:
            continue
        options = list(
            dict.fromkeys(str(o) for v in values for o in (v if isinstance(v, list) else [v]))
        )
        group, given = parsed.key_or_group, item.partition("=")[2].strip()
        if len(options) == 1:
            one = f"{group}={options[0]}"
            return f"{group}={given} is a list of options; to train {options[0]}, write {one}."
        return (
            f"{group}={given} is a list of options: Hydra would merge them into one {group} "
            f"config (the last one's values winning), and a run trains one {group}. To "
            f"compare them, sweep: python train.py -m {group}={','.join(options)}."
        )
    return None


TRAIN_SWITCH = "To train with another {group}, choose it: python train.py {switch}."


def renamed_group(overrides: Iterable[str], choices: Any, advice: str = TRAIN_SWITCH) -> str | None:
    """`dataset.name=fashion_mnist` is a group switch in disguise: the rest of the chosen option
    stays (MNIST's mean and std, Adam's betas), and the run is logged as that option. Naming
    the option itself (`dataset.name=mnist` under dataset=mnist) changes nothing and passes.
    `advice` says how to switch for real (`{group}`, `{switch}`): `rerun` cannot switch."""
    for item in overrides:
        key, sep, value = item.partition("=")
        group, _, field = key.lstrip("+").partition(".")
        if not sep or field != "name" or group not in GROUPS:
            continue
        value = value.strip()
        chosen = str(choices.get(group)) if choices is not None else None
        if value == chosen:
            continue
        options = group_options(group)
        unknown = [v for v in value.split(",") if options and v.strip() not in options]
        if unknown:  # the switch the advice would name is no option either
            hint = _did_you_mean(unknown[0].strip(), options, f"{group}=")
            return (
                f"{item} names no {group} option ({group}.name only renames the chosen one, "
                f"{group}={chosen}): the {group} options are {', '.join(options)}.{hint} "
                + advice.format(group=group, switch=f"{group}=OPTION")
            )
        switch = ("-m " if "," in value else "") + f"{group}={value}"
        return (
            f"{item} renames the {group} option without switching to it: the other settings of "
            f"{group}={chosen} would stay, and the run would be logged as {group}={chosen}. "
            + advice.format(group=group, switch=switch)
        )
    return None


def group_options(group: str) -> list[str]:
    """The options of a config group, as conf/<group>/*.yaml names them ([] if unknown)."""
    from .cli import conf_dir

    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


# The lists in a run's config, and what one item of each is.
LIST_KEYS = {"model.layers": "layer", "schedule.phases": "phase", "optimizer.betas": "value"}


def list_item(overrides: Iterable[str]) -> str | None:
    """`model.layers.conv1.out=32` or `~model.layers.6`: a list item addressed by its name, or
    removed on its own. OmegaConf fails on both with a TypeError that names neither the
    override nor the way to write it."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        bare = key.lstrip("+~")
        for listed, noun in LIST_KEYS.items():
            if not bare.startswith(listed + "."):
                continue
            index, _, rest = bare[len(listed) + 1 :].partition(".")
            if key.startswith("~"):
                return (
                    f"Cannot remove {bare} (~{bare}): Hydra removes keys, not single items of "
                    f"a list; give {listed} as a whole list without that {noun} "
                    f"({listed}=[...])."
                )
            if index.lstrip("-").isdigit():
                continue
            found = _layer_index(index, overrides) if listed == "model.layers" else None
            tail = f".{rest}" if rest else ""
            if found is None:
                return (
                    f"Invalid config key {bare}: {listed} is a list, so each {noun} in it is "
                    f"addressed by its index ({listed}.0{tail}, {listed}.1{tail}, ...), not by "
                    f"{index!r}."
                )
            model, at = found
            value = item.partition("=")[2]
            return (
                f"Invalid config key {bare}: {listed} is a list, so each {noun} in it is "
                f"addressed by its index, not its name; {index} is {listed}.{at} in "
                f"model={model}: write {listed}.{at}{tail}={value}."
            )
    return None


def _layer_index(name: str, overrides: Iterable[str]) -> tuple[str, int] | None:
    """(model option, index) of the layer called name in the model the command chose."""
    from .cli import conf_dir

    chosen = "cnn"  # conf/train.yaml's default
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") == "model" and "," not in value:
            chosen = value.strip()
    path = conf_dir() / "model" / f"{chosen}.yaml"
    try:
        layers = OmegaConf.load(path).get("layers") or []
    except Exception:  # an unknown option is Hydra's to name
        return None
    names = [str(layer.get("name")) for layer in layers if isinstance(layer, DictConfig)]
    return (chosen, names.index(name)) if name in names else None


def keyless(overrides: Iterable[str]) -> str | None:
    """`=1` (a key lost to a shell variable, `$KEY=1`): Hydra read it as a config group and
    said "must be a string or a list. Got int", a rerun as an unknown key ''."""
    for item in overrides:
        if item.lstrip("+~").startswith("="):
            return (
                f"The override {item!r} has no key before its '=': write key=value "
                "(optimizer.lr=0.01, say)."
            )
    return None


def explain(exc: BaseException) -> str:
    """One paragraph naming what is wrong on the command line and what would be right."""
    cause = exc.__cause__
    listed = list_of_options(sys.argv[1:]) or keyless(sys.argv[1:])
    if listed:
        return listed
    several = _SEVERAL_VALUES.match(str(exc))
    if several:
        return _several_values(several.group(1))
    added = _ADDED_GROUP.match(str(exc))
    if added:
        group, option = added.groups()
        return (
            f"Cannot add +{group}={option}: {group} already has its default option; choose "
            f"another with {group}={option}, without the +."
        )
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        return _unknown_option(exc)
    gone = re.match(r"Could not delete from config\. '([^']+)' does not exist", str(exc))
    if gone:  # Hydra says so too of a key whose value is null
        key = gone.group(1)
        return (
            f"Cannot remove {key} (~{key}): no run has such a setting, or it is null (unset) "
            f"already, which is what removing it would do; leave ~{key} out."
        )
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
        override = re.match(r"Could not override '([^']+)'", str(exc))
        return unknown_key(cause, override.group(1) if override else str(cause.full_key))
    if isinstance(exc, OverrideParseException):
        first = str(exc).splitlines()[0]
        tilde = ""
        if "=~" in str(exc.override):  # zsh and quoting leave ~ unexpanded; Hydra cannot parse it
            key = str(exc.override).partition("=")[0]
            tilde = f"; a ~ is not expanded here: write the full path ({key}=$HOME/...)"
        return (
            f"Cannot read the override {exc.override!r}: {first} (Hydra's override syntax){tilde}."
        )
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Error merging override ") and isinstance(cause, OmegaConfBaseException):
        override = text.removeprefix("Error merging override ")
        missing = past_the_end(cause)
        if missing:
            return f"Invalid config key in {override}: {missing}."
        if override.startswith("~") and "does not support deletion" in str(cause):
            key = override[1:].partition("=")[0]
            return (
                f"Cannot remove {key} ({override}): every run has this setting; give it "
                f"another value with {key}=VALUE."
            )
        return f"Invalid config value {override}: {str(cause).splitlines()[0].rstrip('.')}."
    return one_paragraph(exc)


def _several_values(override: str) -> str:
    """`key=a,b` outside a sweep: a sweep is what is usually meant, never a list of options."""
    key = override.partition("=")[0].lstrip("+~")
    if key == "experiment":  # presets sweep themselves, and a sweep cannot nest theirs
        names = override.partition("=")[2].split(",")
        return (
            f"{override} names several presets: a command runs one preset (its own sweep), so "
            "run each as its own command: "
            + "; ".join(f"`python train.py experiment={n}`" for n in names)
            + "."
        )
    said = (
        f"{override} gives several values: to run one job for each, sweep "
        f"(python train.py -m {shlex.quote(override)})"
    )
    if key in GROUPS:
        return f"{said}; a run trains one {key}."
    return f"{said}; for one list value write {key}=[...], for one string quote it: {key}='...'."


def past_the_end(cause: OmegaConfBaseException) -> str | None:
    """`model.layers.9.x=...` on a 7-item list: OmegaConf's complaint is about types."""
    items = getattr(cause, "parent_node", None)
    index = getattr(cause, "key", None)
    if not isinstance(items, ListConfig) or not isinstance(index, int) or index < len(items):
        return None
    where = str(cause.full_key).rpartition("[")[0]
    has = (
        f"{where} is empty"
        if not len(items)
        else f"{where} has {len(items)} item(s), {where}.0 to {where}.{len(items) - 1}"
    )
    return f"{has}, so there is no {where}.{index}; to add one, give the whole list ({where}=[...])"


def _unknown_option(exc: MissingConfigException) -> str:
    group, _, option = str(exc.missing_cfg_file).rpartition("/")
    options = [o for o in exc.options or [] if not o.endswith("_schema")]
    if not group:
        return one_paragraph(exc).split("; Config search path")[0]
    hint = _did_you_mean(option, options, group + "=")
    known = f"the options are {', '.join(options)}" if options else "it has no options"
    return f"Unknown option {group}={option}: {known}.{hint}"


def unknown_key(cause: ConfigKeyError | ConfigAttributeError, full_key: str) -> str:
    """An unknown key, with the keys there are and the nearest one."""
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
    if key in valid:  # a schema key that is gone: `~trainer` earlier on the command line
        whole = f"{parent}.{key}" if parent else key
        return (
            f"Cannot set {full_key}: {whole} was removed (~{whole}) on the same command line, "
            f"so nothing is left to set under it; drop ~{whole}."
        )
    names = {cls: name for name, cls in OPTIMIZER_SCHEMAS.items()}
    if schema in names:
        where = f"the {names[schema]} optimizer has no setting {key!r}"
        listed = f"valid keys for {names[schema]}"
    else:
        where = f"{parent or 'the top level'} has no setting {key!r}"
        listed = "valid keys there"
    # `-m optimizer=sgd,rmsprop optimizer.momentum=0.5`: a key of the swept optimizers that the
    # default one lacks fails before any job is composed, on the default.
    known = {f.name for cls in OPTIMIZER_SCHEMAS.values() for f in dataclasses.fields(cls)}
    swept = _swept_group(parent, sys.argv[1:]) if schema in names and key in known else None
    if swept:
        default = names[schema]
        given = next(
            (a.partition("=")[2] for a in sys.argv[1:] if a.lstrip("+").startswith(f"{full_key}=")),
            "VALUE",
        )
        return (
            f"Unknown config key {full_key}: a sweep over {swept} is composed once with the "
            f"default {parent} ({default}) before its jobs, and {where}. To set it in each job "
            f"whose {parent} has it, write ++{full_key}={given}; a job whose {parent} has no "
            "such setting is then named."
        )
    hint = _did_you_mean(key, valid, f"{parent}." if parent else "")
    if parent == "hydra.launcher":
        hint += (
            " Settings under hydra.launcher are those of the launcher chosen with "
            "hydra/launcher=... (the default runs jobs one after another and has none): "
            "hydra/launcher=joblib takes n_jobs, hydra/launcher=submitit_local array_parallelism."
        )
    return f"Unknown config key {full_key}: {where}; {listed}: {', '.join(valid)}.{hint}"


def _swept_group(group: str, args: list[str]) -> str | None:
    """The override sweeping a config group on this command line (`optimizer=sgd,rmsprop`)."""
    if group not in GROUPS or not {"-m", "--multirun"} & set(args):
        return None
    for item in args:
        if item.partition("=")[0] != group:
            continue
        try:
            parsed = OverridesParser.create().parse_overrides([item])[0]
        except HydraException:
            return None
        if parsed.is_sweep_override():
            return item
    return None


def _did_you_mean(word: str, choices: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {prefix}{close[0]}?" if close else ""
