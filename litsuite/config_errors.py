"""One-line messages for configurations the parser rejects: which key, which file, what it accepts.

jsonargparse reports a bad value nested inside the union of every type a section accepts (a
model section says "Does not validate against any of the Union subtypes" before it reaches the
key; omni-us/jsonargparse#695). It chains its exceptions, one per level (``Parser key "model"`` →
``Problem with given class_path ...`` → ``Parser key "k"`` → the value error), so the key path is
read level by level from that chain rather than from the combined text. A YAML syntax error is
found before jsonargparse reads the file, which would report it without the file's name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path

import yaml

# Attributes of a data module passed to the model's __init__ when the model accepts them.
DATA_TO_MODEL_LINKS = ("input_shape", "num_classes", "class_names", "class_frequency_ranks", "vocab_size")


class ConfigError(ValueError):
    """A configuration the parser rejected, reduced to one line."""


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def valid_keys(class_path: str) -> list[str]:
    """The keyword arguments a class accepts, minus those linked from the data module."""
    params = inspect.signature(import_class(class_path).__init__).parameters
    return [
        n
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in DATA_TO_MODEL_LINKS
    ]


def one_line(message: str) -> str:
    """The first non-empty line of an error message, with its whitespace collapsed."""
    lines = [ln.strip(" -") for ln in str(message).splitlines() if ln.strip(" -")]
    return re.sub(r"\s+", " ", lines[0] if lines else str(message))


def config_files(args: list[str]) -> list[str]:
    """The files given with ``--config`` in a LightningCLI argument list, in order."""
    files = []
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--config" and i + 1 < len(args) else arg.partition("=")[2]
        if (arg == "--config" or arg.startswith("--config=")) and Path(value).is_file():
            files.append(value)
    return files


def check_yaml_syntax(path: str) -> None:
    """Raise :class:`ConfigError` naming the file, line and column when ``path`` is not valid YAML."""
    try:
        yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or one_line(str(err))
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None


def innermost_cause(err: BaseException) -> BaseException:
    """The last exception in ``err``'s chain of causes (``err`` itself when it has none)."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return err


def _levels(err: BaseException) -> list[str]:
    """The first line of each exception in ``err``'s chain of causes, outermost first."""
    levels, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        levels.append(one_line(str(err)))
        err = err.__cause__
    return levels


def _setting_file(files: list[str], key: str) -> str | None:
    """The last of ``files`` that sets ``key`` (``model.k`` is also found as ``model.init_args.k``)."""
    head, _, rest = key.partition(".")
    paths = [key.split("."), [head, "init_args", *rest.split(".")]] if rest else [[key]]
    for path in reversed(files):
        try:
            node = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        for parts in paths:
            found = node
            for part in parts:
                found = found.get(part, KeyError) if isinstance(found, dict) else KeyError
            if found is not KeyError:
                return path
    return None


def _choices(section: str, class_path: str | None, parser_keys: list[str]) -> list[str]:
    """The keys a section accepts: a class's arguments, or the parser's keys under ``section``."""
    if class_path:
        return valid_keys(class_path)
    prefix = f"{section}." if section else ""
    names = [k[len(prefix) :] for k in parser_keys if k.startswith(prefix)]
    return [n.split(".")[0] for n in names if n != "config" and not n.startswith("__")]


def _unknown_key(section: str, option: str, class_path: str | None, parser_keys: list[str], files: list[str]) -> str:
    key = f"{section}.{option}" if section else option
    choices = list(dict.fromkeys(_choices(section, class_path, parser_keys)))
    close = difflib.get_close_matches(option, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f" in {file}" if (file := _setting_file(files, key)) else ""
    owner = f" for {class_path}" if class_path else ""
    return f"unknown key '{key}'{where}{owner}{hint}; valid keys: {', '.join(choices)}"


def describe_parse_error(err: BaseException, parser_keys: list[str], files: list[str]) -> str:
    """One line for a jsonargparse parse error: the key (and file) at fault and what it accepts.

    Args:
        err: the ``ArgumentError`` jsonargparse raised (with ``exit_on_error=False``).
        parser_keys: every dotted key the parser knows (``parser.get_defaults().keys()``).
        files: the ``--config`` files, to name the one that sets an unknown key.
    """
    levels = _levels(err)
    keys, class_path = [], None
    for level in levels:
        if (m := re.match(r'Parser key "([\w.]+)"', level)) and keys[-1:] != [m.group(1)]:
            keys.append(m.group(1))  # jsonargparse re-raises each level once more as an ArgumentError
        elif m := re.match(r"Problem with given class_path '([\w.]+)'", level):
            class_path = m.group(1)
    leaf = levels[-1]
    if m := re.match(r"unrecognized arguments: --([\w.]+)", leaf):
        section, _, option = m.group(1).rpartition(".")
        return _unknown_key(section, option, None, parser_keys, files)
    if m := re.match(r"(?:Group '([\w.]+)' does not accept option|Option) '([\w.]+)'", leaf):
        section = m.group(1) or ".".join(keys)
        return _unknown_key(section, m.group(2), class_path, parser_keys, files)
    if m := re.match(r"Expected a <class '(\w+)'>\. Got value: (.*)", leaf):
        leaf = f"expected {m.group(1)}, got '{m.group(2)}'"
    elif leaf.startswith("Problems parsing config"):
        leaf = "not valid YAML or JSON: " + leaf.partition(":")[2].strip()
    return f"{'.'.join(keys)}: {leaf}" if keys else leaf
