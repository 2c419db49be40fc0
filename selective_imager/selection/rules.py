"""Rule files: loading, strict validation, the built-in library and include resolution.

A rule file is YAML with one rule (see ``rules/README.md`` for the language). KAPE
``.tkape`` files and ForensicArtifacts YAML files are accepted wherever a rule file is:
they are recognised by content and converted in memory by
:mod:`selective_imager.selection.importers`.

Every problem is reported as a :class:`~selective_imager.errors.RuleError` carrying
``file:line``; all problems of a file are collected and raised together as a
:class:`RuleValidationError`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from selective_imager.errors import RuleError
from selective_imager.selection.globs import GlobError, compile_glob

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from selective_imager.selection.rulepath import RulePath

__all__ = [
    "DEFAULT_RULE",
    "NAME_RE",
    "Rule",
    "RuleSet",
    "RuleValidationError",
    "Target",
    "library_dir",
    "load_file_rules",
    "load_library",
    "load_rule_file",
    "parse_rule_text",
    "parse_size",
    "resolve",
    "rule_from_mapping",
    "validate_files",
]

#: The rule ``collect`` uses when none is given.
DEFAULT_RULE = "triage"

#: Rule names: lower-case ASCII words joined by single hyphens.
NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NAME_MAX = 64
_NAME_HINT = "lower-case letters, digits and single hyphens, e.g. windows-event-logs"

_RULE_KEYS = frozenset(
    {"name", "title", "description", "version", "author", "references", "os", "include", "targets"}
)
_TARGET_KEYS = frozenset({"name", "paths", "exclude", "min_size", "max_size", "case_sensitive"})

_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")
_SIZE_HINT = "an integer number of bytes or e.g. 512KiB, 1GiB, 20MB (KB/MB/GB are 1000-based)"


@dataclass(frozen=True, slots=True)
class Target:
    """One named group of paths inside a rule.

    Attributes:
        name: label shown in reports (unique within its rule).
        paths: glob patterns that select files (see :mod:`selective_imager.selection.globs`).
        exclude: glob patterns removed from what ``paths`` selected.
        min_size: smallest stream size in bytes that is selected, inclusive.
        max_size: largest stream size in bytes that is selected, inclusive.
        case_sensitive: force case-(in)sensitive matching; None follows the file system.
    """

    name: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    case_sensitive: bool | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, as loaded from a file.

    Attributes:
        name: unique kebab-case name.
        title: one-line title.
        description: free text.
        version: integer revision of the rule.
        author: who wrote it.
        references: URLs documenting the artifacts.
        os: operating systems it applies to (informative).
        include: names of rules this one includes.
        targets: the rule's own targets.
        source_file: the file it was loaded from (``"<string>"`` for text).
        sha256: hex SHA-256 of that file's bytes.
        include_lines: line of each ``include`` item (None when unknown), for errors.
    """

    name: str
    title: str
    description: str = ""
    version: int = 1
    author: str = ""
    references: tuple[str, ...] = ()
    os: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    source_file: str = "<string>"
    sha256: str = ""
    include_lines: tuple[int | None, ...] = field(default=(), repr=False, compare=False)


class RuleValidationError(RuleError):
    """Several problems found in rule files; ``errors`` lists every one.

    ``file``, ``line``, ``message`` and ``hint`` are those of the first error; ``str()``
    gives one ``file:line: message`` line per error.
    """

    def __init__(self, errors: Iterable[RuleError]) -> None:
        self.errors: tuple[RuleError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("RuleValidationError needs at least one error")
        first = self.errors[0]
        super().__init__(first.file, first.line, first.message, first.hint)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


# --------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _Value:
    """A YAML value with the line it starts on (None for values built in memory)."""

    value: Any
    line: int | None
    key_lines: dict[str, int] = field(default_factory=dict)


def _from_node(loader: Any, node: yaml.Node, errors: _Errors) -> _Value:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        mapping: dict[str, _Value] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                errors.add(key_node.start_mark.line + 1, f"key {key!r} is not a string")
                continue
            if key in mapping:
                errors.add(
                    key_node.start_mark.line + 1,
                    f"duplicate key {key!r} (first on line {key_lines[key]})",
                )
                continue
            key_lines[key] = key_node.start_mark.line + 1
            mapping[key] = _from_node(loader, value_node, errors)
        return _Value(mapping, line, key_lines)
    if isinstance(node, yaml.SequenceNode):
        return _Value([_from_node(loader, item, errors) for item in node.value], line)
    return _Value(loader.construct_object(node, deep=True), line)


def _from_python(value: Any) -> _Value:
    if isinstance(value, dict):
        return _Value({str(k): _from_python(v) for k, v in value.items()}, None)
    if isinstance(value, list | tuple):
        return _Value([_from_python(v) for v in value], None)
    return _Value(value, None)


class _Errors:
    """Collects the RuleErrors of one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[RuleError] = []

    def add(self, line: int | None, message: str, hint: str = "") -> None:
        self.items.append(RuleError(self.file, line, message, hint))

    def raise_if_any(self) -> None:
        if self.items:
            raise RuleValidationError(self.items)


def parse_size(value: object) -> int:
    """Bytes from ``1024``, ``"512KiB"``, ``"1GiB"`` or ``"20MB"`` (1000-based).

    Raises:
        ValueError: not a non-negative integer with a known unit.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size")
    found = _SIZE_RE.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a size")
    number, unit = found.groups()
    unit = unit or "B"
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {unit!r}")
    return int(number) * _SIZE_UNITS[unit]


def _string(item: _Value, what: str, errors: _Errors, *, allow_empty: bool = False) -> str | None:
    if not isinstance(item.value, str) or (not allow_empty and not item.value.strip()):
        errors.add(item.line, f"{what} must be a non-empty string, got {item.value!r}")
        return None
    return item.value


def _string_list(item: _Value, what: str, errors: _Errors) -> list[tuple[str, int | None]]:
    if isinstance(item.value, str):
        errors.add(item.line, f"{what} must be a list", f"write {what}: [{item.value}]")
        return []
    if not isinstance(item.value, list):
        errors.add(item.line, f"{what} must be a list of strings, got {item.value!r}")
        return []
    out: list[tuple[str, int | None]] = []
    for element in item.value:
        text = _string(element, f"each item of {what}", errors)
        if text is not None:
            out.append((text, element.line))
    return out


def _check_glob(pattern: str, line: int | None, errors: _Errors) -> None:
    try:
        compile_glob(pattern, case_sensitive=True)
    except GlobError as exc:
        errors.add(line, str(exc), "see the glob grammar in rules/README.md")


def _build_target(item: _Value, errors: _Errors) -> Target | None:
    if not isinstance(item.value, dict):
        errors.add(item.line, "a target must be a mapping with name and paths")
        return None
    data: dict[str, _Value] = item.value
    for key in data:
        if key not in _TARGET_KEYS:
            errors.add(
                item.key_lines.get(key),
                f"unknown target key {key!r}",
                "allowed: " + ", ".join(sorted(_TARGET_KEYS)),
            )
    name = None
    if "name" not in data:
        errors.add(item.line, "target without a name")
    else:
        name = _string(data["name"], "target name", errors)
    paths: list[tuple[str, int | None]] = []
    if "paths" not in data:
        errors.add(item.line, "target without paths", "add paths: [Some/Dir/*.ext]")
    else:
        paths = _string_list(data["paths"], "paths", errors)
        if not paths and isinstance(data["paths"].value, list):
            errors.add(data["paths"].line, "empty paths list")
    exclude: list[tuple[str, int | None]] = []
    if "exclude" in data:
        exclude = _string_list(data["exclude"], "exclude", errors)
    for pattern, line in paths + exclude:
        _check_glob(pattern, line, errors)
    sizes: dict[str, int | None] = {"min_size": None, "max_size": None}
    for key in sizes:
        if key in data:
            try:
                sizes[key] = parse_size(data[key].value)
            except ValueError as exc:
                errors.add(data[key].line, f"bad {key}: {exc}", _SIZE_HINT)
    low, high = sizes["min_size"], sizes["max_size"]
    if low is not None and high is not None and low > high:
        errors.add(data["min_size"].line, f"min_size {low} is larger than max_size {high}")
    case_sensitive: bool | None = None
    if "case_sensitive" in data:
        value = data["case_sensitive"].value
        if isinstance(value, bool):
            case_sensitive = value
        else:
            errors.add(data["case_sensitive"].line, "case_sensitive must be true or false")
    if name is None or not paths:
        return None
    return Target(
        name=name,
        paths=tuple(p for p, _ in paths),
        exclude=tuple(p for p, _ in exclude),
        min_size=low,
        max_size=high,
        case_sensitive=case_sensitive,
    )


def _build_rule(root: _Value, errors: _Errors, sha256: str) -> Rule | None:
    if not isinstance(root.value, dict):
        errors.add(root.line, "a rule file must be a YAML mapping", "start with name: my-rule")
        return None
    data: dict[str, _Value] = root.value
    for key in data:
        if key not in _RULE_KEYS:
            errors.add(
                root.key_lines.get(key),
                f"unknown key {key!r}",
                "allowed: " + ", ".join(sorted(_RULE_KEYS)),
            )
    name: str | None = None
    if "name" not in data:
        errors.add(root.line, "missing key 'name'")
    else:
        name = _string(data["name"], "name", errors)
        if name is not None and (NAME_RE.fullmatch(name) is None or len(name) > _NAME_MAX):
            errors.add(data["name"].line, f"bad rule name {name!r}", _NAME_HINT)
    title = ""
    if "title" not in data:
        errors.add(root.line, "missing key 'title'", "add a one-line title")
    else:
        title = _string(data["title"], "title", errors) or ""
    description = ""
    if "description" in data:
        description = _string(data["description"], "description", errors, allow_empty=True) or ""
    author = ""
    if "author" in data:
        author = _string(data["author"], "author", errors, allow_empty=True) or ""
    version = 1
    if "version" in data:
        raw = data["version"].value
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            errors.add(data["version"].line, f"version must be a positive integer, got {raw!r}")
        else:
            version = raw
    references = (
        _string_list(data["references"], "references", errors) if "references" in data else []
    )
    os_list = _string_list(data["os"], "os", errors) if "os" in data else []
    includes = _string_list(data["include"], "include", errors) if "include" in data else []
    for included, line in includes:
        if NAME_RE.fullmatch(included) is None:
            errors.add(line, f"bad rule name {included!r} in include", _NAME_HINT)
    if name is not None and any(included == name for included, _ in includes):
        line = next(line for included, line in includes if included == name)
        errors.add(line, f"rule {name!r} includes itself")
    targets: list[Target] = []
    if "targets" in data:
        raw_targets = data["targets"]
        if not isinstance(raw_targets.value, list):
            errors.add(raw_targets.line, "targets must be a list of mappings")
        else:
            if not raw_targets.value:
                errors.add(raw_targets.line, "empty targets list")
            seen: dict[str, int | None] = {}
            for item in raw_targets.value:
                target = _build_target(item, errors)
                if target is None:
                    continue
                if target.name in seen:
                    errors.add(item.line, f"duplicate target name {target.name!r}")
                seen[target.name] = item.line
                targets.append(target)
    if "targets" not in data and not includes:
        errors.add(root.line, "a rule needs targets or include", "add targets: or include:")
    if name is None:
        return None
    return Rule(
        name=name,
        title=title,
        description=description,
        version=version,
        author=author,
        references=tuple(r for r, _ in references),
        os=tuple(o for o, _ in os_list),
        include=tuple(i for i, _ in includes),
        targets=tuple(targets),
        source_file=errors.file,
        sha256=sha256,
        include_lines=tuple(line for _, line in includes),
    )


def parse_rule_text(text: str, file: str = "<string>", sha256: str = "") -> Rule:
    """Parse one rule in our YAML format.

    Raises:
        RuleValidationError: every problem found, each with ``file:line``.
    """
    errors = _Errors(file)
    # libyaml's loader when present: same nodes and marks, several times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            mark = exc.problem_mark
            errors.add(
                mark.line + 1 if mark else None, "more than one YAML document", "one rule per file"
            )
            errors.raise_if_any()
            raise AssertionError("unreachable") from exc
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            errors.add(mark.line + 1 if mark else None, f"YAML syntax error: {exc.problem}")
            errors.raise_if_any()
            raise AssertionError("unreachable") from exc
        if node is None:
            errors.add(1, "empty rule file")
            errors.raise_if_any()
            raise AssertionError("unreachable")
        root = _from_node(loader, node, errors)
    finally:
        loader.dispose()
    rule = _build_rule(root, errors, sha256)
    errors.raise_if_any()
    assert rule is not None
    return rule


def rule_from_mapping(data: Mapping[str, Any], file: str = "<memory>", sha256: str = "") -> Rule:
    """Validate an in-memory rule document (as the importers produce) into a Rule.

    Raises:
        RuleValidationError: every problem found (without line numbers).
    """
    errors = _Errors(file)
    rule = _build_rule(_from_python(dict(data)), errors, sha256)
    errors.raise_if_any()
    assert rule is not None
    return rule


# ----------------------------------------------------------------------- file loading


def _read(path: Path) -> tuple[str, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RuleError(str(path), None, f"cannot read rule file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RuleError(str(path), None, "rule file is not UTF-8") from exc
    return text, hashlib.sha256(raw).hexdigest()


def _detect(text: str, file: str) -> str:
    """``native``, ``kape`` or ``forensicartifacts`` by looking at the content."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        # Let the native parser report the syntax error with its line.
        return "native"
    if not docs:
        return "native"
    first = docs[0]
    if len(docs) == 1 and isinstance(first, dict) and "Targets" in first and "name" not in first:
        return "kape"
    if all(isinstance(d, dict) and "sources" in d and "name" in d for d in docs) and (
        len(docs) > 1 or "targets" not in first
    ):
        return "forensicartifacts"
    return "native"


def load_file_rules(path: str | Path) -> list[Rule]:
    """Every rule a file defines.

    Our format gives one rule; a KAPE ``.tkape`` file gives one; a ForensicArtifacts
    file gives one rule per artifact definition that has file or group sources. A
    ``path#Name`` suffix keeps only the ForensicArtifacts definition ``Name``.

    Raises:
        RuleError: the file cannot be read, parsed or converted (RuleValidationError
            when several problems were found).
    """
    text_path = str(path)
    fragment = ""
    if "#" in text_path and not Path(text_path).exists():
        text_path, fragment = text_path.rsplit("#", 1)
    file = Path(text_path)
    text, digest = _read(file)
    kind = _detect(text, str(file))
    if kind == "native":
        if fragment:
            raise RuleError(
                str(file), None, f"'#{fragment}' only applies to ForensicArtifacts files"
            )
        return [parse_rule_text(text, str(file), digest)]
    # Imported lazily: the importers import this module.
    from selective_imager.selection.importers import rules_from_community_file

    return rules_from_community_file(file, text, digest, kind, fragment)


def load_rule_file(path: str | Path) -> Rule:
    """The single rule defined by ``path`` (use ``file.yaml#Name`` for one FA artifact).

    Raises:
        RuleError: invalid file, or a file defining several rules.
    """
    rules = load_file_rules(path)
    if len(rules) != 1:
        raise RuleError(
            str(path),
            None,
            f"file defines {len(rules)} rules, expected one",
            "select one with file.yaml#ArtifactName, or use load_file_rules",
        )
    return rules[0]


def library_dir() -> Path:
    """The directory of the built-in rule library."""
    return Path(__file__).parent.parent / "rulelib"


def load_library(directory: Path | None = None) -> dict[str, Rule]:
    """Every rule of the library (``*.yaml`` in :func:`library_dir`), by name.

    Raises:
        RuleValidationError: a library file is invalid, or two share a name.
    """
    directory = library_dir() if directory is None else directory
    rules: dict[str, Rule] = {}
    problems: list[RuleError] = []
    for file in sorted(directory.glob("*.yaml")):
        try:
            rule = load_rule_file(file)
        except RuleValidationError as exc:
            problems.extend(exc.errors)
            continue
        except RuleError as exc:
            problems.append(exc)
            continue
        if rule.name in rules:
            problems.append(
                RuleError(
                    str(file),
                    None,
                    f"duplicate rule name {rule.name!r}",
                    f"also defined in {rules[rule.name].source_file}",
                )
            )
            continue
        if file.stem != rule.name:
            problems.append(
                RuleError(
                    str(file),
                    None,
                    f"library file of rule {rule.name!r} must be named {rule.name}.yaml",
                )
            )
        rules[rule.name] = rule
    if problems:
        raise RuleValidationError(problems)
    return rules


# ------------------------------------------------------------------------- resolution


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules selected for a run, with includes expanded.

    Attributes:
        requested: the top-level rule names, in the order asked for.
        rules: every rule reachable from them (requested and included), by name.
        roots: for each rule in ``rules``, the requested rules that reach it.
    """

    requested: tuple[str, ...]
    rules: Mapping[str, Rule]
    roots: Mapping[str, tuple[str, ...]]

    def leaves(self) -> tuple[Rule, ...]:
        """The reachable rules that have targets, sorted by name."""
        return tuple(self.rules[n] for n in sorted(self.rules) if self.rules[n].targets)

    def targets(self) -> tuple[tuple[Rule, Target], ...]:
        """Every (rule, target) pair to match."""
        return tuple((rule, target) for rule in self.leaves() for target in rule.targets)


def _is_file_spec(spec: str) -> bool:
    base = spec.split("#", 1)[0]
    return (
        "/" in base
        or "\\" in base
        or base.endswith((".yaml", ".yml", ".tkape"))
        or Path(base).exists()
    )


def _load_with_dependencies(spec: str) -> tuple[set[str], list[Rule]]:
    """The names the file itself defines, and its rules plus the ones they include."""
    rules = load_file_rules(spec)
    direct = {r.name for r in rules}
    base = Path(spec.split("#", 1)[0])
    kind = _detect(_read(base)[0], str(base))
    if kind == "forensicartifacts":
        from selective_imager.selection.importers.forensicartifacts import fa_dependencies

        have = {r.name for r in rules}
        needed = {name for r in rules for name in r.include}
        for conversion in fa_dependencies(base, needed, have):
            if conversion.document is not None:
                rules.append(rule_from_mapping(conversion.document, str(base)))
    if kind == "kape":
        from selective_imager.selection.importers.kape import kape_dependencies

        seen = {base.resolve()}
        queue = list(kape_dependencies(base))
        while queue:
            dep = queue.pop()
            if dep.resolve() in seen:
                continue
            seen.add(dep.resolve())
            rules.extend(load_file_rules(dep))
            queue.extend(kape_dependencies(dep))
    return direct, rules


def _add_unique(store: dict[str, Rule], rule: Rule, problems: list[RuleError]) -> bool:
    """Add ``rule`` unless another file already defines its name (that is a problem)."""
    other = store.get(rule.name)
    if other is not None and other.source_file != rule.source_file:
        problems.append(
            RuleError(
                rule.source_file,
                None,
                f"duplicate rule name {rule.name!r}",
                f"also defined in {other.source_file}",
            )
        )
        return False
    store[rule.name] = rule
    return True


def _check_graph(rules: Mapping[str, Rule], start: Iterable[str]) -> list[RuleError]:
    """Unknown includes and cycles reachable from ``start``."""
    problems: list[RuleError] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    reported_cycles: set[frozenset[str]] = set()

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        rule = rules[name]
        lines = rule.include_lines or (None,) * len(rule.include)
        for included, line in zip(rule.include, lines, strict=False):
            if included not in rules:
                problems.append(
                    RuleError(
                        rule.source_file,
                        line,
                        f"unknown rule {included!r} in include",
                        "use a library rule name (rules list) or give its file too",
                    )
                )
            elif state.get(included) == 1:
                cycle = [*stack[stack.index(included) :], included]
                key = frozenset(cycle)
                if key not in reported_cycles:
                    reported_cycles.add(key)
                    problems.append(
                        RuleError(
                            rule.source_file,
                            line,
                            "include cycle: " + " -> ".join(cycle),
                            f"remove {included!r} from the include list of {name!r}",
                        )
                    )
            elif included not in state:
                visit(included, stack)
        stack.pop()
        state[name] = 2

    for name in start:
        if name in rules and name not in state:
            visit(name, [])
    return problems


def resolve(
    specs: Iterable[str],
    *,
    library: Mapping[str, Rule] | None = None,
    rule_paths: Iterable[Path] = (),
) -> RuleSet:
    """Resolve rule names and rule files into a :class:`RuleSet`.

    Each spec is a library rule name, or a path to a rule file (ours, ``.tkape`` or
    ForensicArtifacts; ``file.yaml#Name`` picks one FA definition, without it every
    definition of the file is requested). Rules loaded from files take precedence
    over library rules of the same name; includes are looked up among the given
    files first, then the library. A KAPE compound's referenced ``.tkape`` files are
    loaded from the KAPE ``Targets`` folder it lives in.

    A name that is neither a file nor a library rule is looked up in ``rule_paths``
    (:mod:`selective_imager.selection.rulepath`: our names, KAPE target names,
    ForensicArtifacts names). An include that no given file or library rule defines
    is looked up beside the file that includes it, then in the rule paths, so a rule
    set converted by ``rules import`` is usable as it is.

    Raises:
        RuleValidationError: unknown names, invalid files, duplicate names among the
            given files, unknown includes or include cycles.
    """
    # The library (24 files, ~0.1 s to load) is read only when a name needs it.
    loaded_library: list[Mapping[str, Rule]] = [] if library is None else [library]

    def lib() -> Mapping[str, Rule]:
        if not loaded_library:
            loaded_library.append(load_library())
        return loaded_library[0]

    from selective_imager.selection.rulepath import RulePath

    paths = RulePath(rule_paths)
    problems: list[RuleError] = []
    from_files: dict[str, Rule] = {}
    requested: list[str] = []

    def load(spec: str, request: bool) -> None:
        try:
            direct, loaded = _load_with_dependencies(spec)
        except RuleValidationError as exc:
            problems.extend(exc.errors)
            return
        except RuleError as exc:
            problems.append(exc)
            return
        for rule in loaded:
            if not _add_unique(from_files, rule, problems):
                continue
            if request and rule.name in direct and rule.name not in requested:
                requested.append(rule.name)

    for spec in specs:
        if _is_file_spec(spec):
            load(spec, True)
        elif spec in lib():
            if spec not in requested:
                requested.append(spec)
        elif (entry := paths.find(spec)) is not None:
            load(entry.spec, True)
        else:
            where = " or the rule paths" if paths.folders else ""
            problems.append(
                RuleError(
                    spec,
                    None,
                    f"no rule named {spec!r} in the library{where} and no such file",
                    "see rules list, rules search WORD, or add --rule-path DIR",
                )
            )
    if any(name not in from_files for rule in from_files.values() for name in rule.include):
        _load_missing_includes(from_files, lib(), paths, load)
    available: dict[str, Rule] = {**(loaded_library[0] if loaded_library else {}), **from_files}
    problems.extend(_check_graph(available, requested))
    if problems:
        raise RuleValidationError(problems)
    reached: dict[str, Rule] = {}
    roots: dict[str, list[str]] = {}
    for top in requested:
        stack = [top]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            reached[name] = available[name]
            roots.setdefault(name, [])
            if top not in roots[name]:
                roots[name].append(top)
            stack.extend(available[name].include)
    return RuleSet(tuple(requested), reached, {k: tuple(v) for k, v in roots.items()})


def _load_missing_includes(
    from_files: dict[str, Rule],
    library: Mapping[str, Rule],
    paths: RulePath,
    load: Callable[[str, bool], None],
) -> None:
    """Load includes defined neither by the given files nor by the library.

    Each is looked up beside the file that includes it, then in the rule paths;
    what is still missing is reported by the include check that follows.
    """
    from selective_imager.selection.rulepath import RulePath

    tried: set[str] = set()
    while True:
        missing = [
            (name, rule)
            for rule in list(from_files.values())
            for name in rule.include
            if name not in from_files and name not in library and name not in tried
        ]
        if not missing:
            return
        for name, rule in missing:
            tried.add(name)
            source = Path(rule.source_file)
            beside = RulePath([source.parent]) if source.is_file() else RulePath([])
            entry = beside.find(name) or paths.find(name)
            if entry is not None:
                load(entry.spec, False)


def validate_files(
    paths: Iterable[str | Path], *, library: Mapping[str, Rule] | None = None
) -> list[RuleError]:
    """Every problem of the given rule files, as a flat list (empty when all valid).

    Checks each file, duplicate names among the files, and that includes resolve
    (among the files, then the library) without cycles.
    """
    problems: list[RuleError] = []
    loaded: dict[str, Rule] = {}
    for path in paths:
        try:
            rules = load_file_rules(path)
        except RuleValidationError as exc:
            problems.extend(exc.errors)
            continue
        except RuleError as exc:
            problems.append(exc)
            continue
        for rule in rules:
            _add_unique(loaded, rule, problems)
    if library is None:
        try:
            library = load_library()
        except RuleValidationError as exc:
            problems.extend(exc.errors)
            library = {}
    available = {**library, **loaded}
    problems.extend(_check_graph(available, loaded))
    return problems
