"""What matters of a Dockerfile to Careen: the images a build reads.

Careen does not build from this parse (the builder reads the Dockerfile itself); it only needs
the *parents* of an image, to rebuild children after their parent and to know which tree image
a ``FROM`` names. The parse follows BuildKit's front end where it matters for that:

* A ``# escape=`` parser directive (``\\`` or a backtick) at the very top; parser directives
  end at the first comment, blank line or instruction.
* Lines ending in the escape character continue on the next line; comment lines and blank
  lines inside a continued instruction are skipped. A ``#`` starts a comment only at the
  beginning of a line.
* Here-documents (``RUN <<EOF`` ... ``EOF``) are skipped, so a line ``FROM x`` inside one is
  not an instruction.
* Instructions are case-insensitive.
* Global ``ARG``\\ s (before the first ``FROM``) with their defaults, overridden by build args,
  are the only variables a ``FROM`` sees (as in BuildKit: a build arg for an undeclared ``ARG``
  is not visible). The platform arguments BuildKit predefines (``TARGETARCH``...) are visible
  when the build args give them. Substitution handles ``$VAR``, ``${VAR}``,
  ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+alt}``, ``${VAR+alt}`` (nested words
  allowed), quotes, and the escape character.
* ``FROM [--platform=P] IMAGE [AS name]``: a ``FROM`` naming an earlier stage (names are
  case-insensitive) builds on that stage and is no parent; ``FROM scratch`` has no parent.
* ``COPY --from=X`` and ``RUN --mount=...,from=X`` read image ``X`` unless ``X`` is a stage
  name or index: such images are parents too, with ``kind`` ``copy-from`` / ``mount-from``.
  Their variables are the ``ARG``\\ s declared inside the stage (BuildKit's scope rule).

A ``FROM`` whose image still holds an unset variable, or does not parse as an image reference
after substitution, is listed in :attr:`Dockerfile.unresolved` rather than failing the parse:
one odd Dockerfile must not stop a fleet run. Only a Dockerfile with no ``FROM`` at all, or a
``FROM`` without an image, raises :class:`~careen.errors.InputFileError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from careen.errors import InputFileError, InvalidReferenceError
from careen.reference import ImageReference

#: How a Dockerfile reads a parent image.
ParentKind = Literal["from", "copy-from", "mount-from"]

SCRATCH = "scratch"
#: Arguments BuildKit defines for every build; a ``FROM`` may use them without an ``ARG``.
PREDEFINED_PLATFORM_ARGS = frozenset({
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
})
#: Dockerfiles are small; a larger file is not one (and is not read into memory whole).
MAX_DOCKERFILE_BYTES = 4 * 1024 * 1024
#: Bytes asked for by the first read of a Dockerfile: all of almost every one.
_FIRST_READ = 64 * 1024

_DIRECTIVE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*\Z")
_INSTRUCTION = re.compile(r"\s*(\S+)(?:\s+(.*))?\Z", re.DOTALL)
_HEREDOC = re.compile(r"\d*<<(-?)([\"']?)([^<\"'\s]+)\2\Z")
_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STAGE_INDEX = re.compile(r"[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class Stage:
    """One ``FROM`` and the stage it starts.

    ``base`` is the image text as written; ``resolved`` the text after variable substitution
    (``None`` when a variable in it is unset). ``reference`` is the parent image, or ``None``
    for ``scratch``, for an earlier stage (then ``from_stage`` is that stage's index) and for a
    base that did not resolve (then ``problem`` says why). ``name`` is lower-cased, as stage
    names are case-insensitive.
    """

    index: int
    line: int
    base: str
    resolved: str | None
    reference: ImageReference | None
    name: str | None = None
    platform: str | None = None
    from_stage: int | None = None
    problem: str | None = None

    @property
    def is_scratch(self) -> bool:
        return self.resolved == SCRATCH


@dataclass(frozen=True, slots=True)
class ParentImage:
    """An image the build reads: a ``FROM`` parent, a ``COPY --from`` or a ``RUN --mount``
    source. ``line`` is the 1-based line where the instruction starts."""

    reference: ImageReference
    kind: ParentKind
    line: int


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """The parse of one Dockerfile (see the module docstring for what is understood).

    ``parents`` are the external images the build reads, in order of first use, deduplicated;
    ``parent_images`` the same with how and where each is read (not deduplicated).
    ``unresolved`` holds the image text of each ``FROM`` / ``--from`` that could not be
    resolved, as written; ``problems`` says why, one line each (``line 3: FROM $X: ...``).
    ``global_args`` are the global ``ARG`` defaults as declared (before build args).
    """

    source: str
    stages: tuple[Stage, ...]
    parents: tuple[ImageReference, ...]
    parent_images: tuple[ParentImage, ...] = ()
    unresolved: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    global_args: Mapping[str, str | None] = field(default_factory=dict)
    escape: str = "\\"

    @property
    def platforms(self) -> tuple[str, ...]:
        """The distinct ``--platform`` values of the ``FROM`` lines, in order."""
        return tuple(dict.fromkeys(s.platform for s in self.stages if s.platform is not None))


# -- reading -----------------------------------------------------------------------------------


def read_dockerfile(
    path: Path, *, build_args: Mapping[str, str] | None = None, source: str | None = None
) -> Dockerfile:
    """Read and parse the Dockerfile at ``path``; ``source`` names it in errors (default: the
    path). Unreadable, oversized or non-UTF-8 files raise :class:`InputFileError`."""
    name = source if source is not None else str(path)
    try:
        with path.open("rb") as handle:
            # A small read first: asking for the whole bound at once allocates 4 MiB for every
            # Dockerfile (a tree of thousands of them spent a third of its reading on that).
            data = handle.read(_FIRST_READ)
            if len(data) == _FIRST_READ:
                data += handle.read(MAX_DOCKERFILE_BYTES + 1 - _FIRST_READ)
    except OSError as error:
        raise InputFileError(name, f"cannot read the Dockerfile: {error.strerror}") from None
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise InputFileError(
            name, f"larger than {MAX_DOCKERFILE_BYTES // (1024 * 1024)} MiB: not a Dockerfile"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(
            name, f"not UTF-8 text (byte {error.start}); save the Dockerfile as UTF-8"
        ) from None
    return parse_dockerfile(text, build_args=build_args or {}, source=name)


# -- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Instruction:
    line: int
    keyword: str  # lower case
    arguments: str


def parse_dockerfile(text: str, *, build_args: Mapping[str, str], source: str) -> Dockerfile:
    """Parse Dockerfile ``text``. ``build_args`` (from config) override global ``ARG``
    defaults; ``source`` names the file in errors and problems."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    escape = _escape_directive(lines)
    instructions = list(_instructions(lines, escape))

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    stage_names: dict[str, int] = {}
    stage_env: dict[str, str] = {}
    parent_images: list[ParentImage] = []
    unresolved: list[str] = []
    problems: list[str] = []

    for instruction in instructions:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "arg":
            for arg_name, written_default in _arg_declarations(arguments):
                # Inside a stage only the stage's own ARGs are in scope (BuildKit's rule).
                env = stage_env if stages else _from_env(global_args, build_args)
                default = _arg_default(written_default, env, escape)
                if not stages:
                    global_args[arg_name] = default
                else:
                    value = _stage_arg_value(arg_name, default, build_args, global_args)
                    if value is not None:
                        stage_env[arg_name] = value
        elif keyword == "from":
            env = _from_env(global_args, build_args)
            stage = _parse_from(
                instruction, index=len(stages), env=env, stage_names=stage_names, escape=escape,
                source=source,
            )
            stages.append(stage)
            if stage.name is not None and stage.name not in stage_names:
                stage_names[stage.name] = stage.index
            if stage.reference is not None:
                parent_images.append(ParentImage(stage.reference, "from", instruction.line))
            elif stage.problem is not None:
                unresolved.append(stage.base)
                problems.append(f"line {stage.line}: FROM {stage.base}: {stage.problem}")
            stage_env = {}
        elif keyword in ("copy", "run") and stages:
            for written in _from_flags(keyword, arguments):
                kind: ParentKind = "copy-from" if keyword == "copy" else "mount-from"
                image, why = _resolve_from_flag(
                    written, stage_env, stage_names, len(stages), escape
                )
                if image is not None:
                    parent_images.append(ParentImage(image, kind, instruction.line))
                elif why is not None:
                    unresolved.append(written)
                    flag = "COPY --from" if keyword == "copy" else "RUN --mount=from"
                    problems.append(f"line {instruction.line}: {flag}={written}: {why}")

    if not stages:
        raise InputFileError(
            source, "no FROM instruction: a Dockerfile must start a stage with FROM IMAGE"
        )
    parents = tuple(dict.fromkeys(p.reference for p in parent_images))
    return Dockerfile(
        source=source, stages=tuple(stages), parents=parents,
        parent_images=tuple(parent_images), unresolved=tuple(unresolved),
        problems=tuple(problems),
        global_args=dict(global_args), escape=escape,
    )


def _escape_directive(lines: list[str]) -> str:
    """The escape character from the parser directives at the top (``\\`` by default)."""
    escape = "\\"
    seen: set[str] = set()
    for line in lines:
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            break
        key = match.group(1).lower()
        if key in seen:  # BuildKit: a repeated directive ends the directives (and is an error)
            break
        seen.add(key)
        if key == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
    return escape


def _instructions(lines: list[str], escape: str) -> Iterator[_Instruction]:
    """Logical instructions: continuation lines joined, comments and here-documents skipped."""
    continuation = re.compile(re.escape(escape) + r"[ \t]*\Z")
    index, count = 0, len(lines)
    while index < count:
        raw = lines[index]
        start = index + 1
        index += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts: list[str] = []
        current = raw
        while True:
            match = continuation.search(current)
            if match is None:
                parts.append(current)
                break
            parts.append(current[: match.start()])
            # Skip comment and blank lines inside the continued instruction, as BuildKit does.
            while index < count and (
                not lines[index].strip() or lines[index].lstrip().startswith("#")
            ):
                index += 1
            if index >= count:
                break
            current = lines[index]
            index += 1
        logical = "".join(parts)
        match_instruction = _INSTRUCTION.match(logical)
        if match_instruction is None:
            continue
        keyword = match_instruction.group(1).lower()
        arguments = (match_instruction.group(2) or "").strip()
        if keyword in ("run", "copy", "add"):
            index = _skip_heredocs(lines, index, arguments)
        yield _Instruction(start, keyword, arguments)


def _skip_heredocs(lines: list[str], index: int, arguments: str) -> int:
    """Skip the bodies of here-documents the instruction opens; return the next line index.
    An unterminated here-document runs to the end of the file."""
    for word in arguments.split():
        match = _HEREDOC.match(word)
        if match is None:
            continue
        strip_tabs, terminator = match.group(1) == "-", match.group(3)
        while index < len(lines):
            body = lines[index]
            index += 1
            if (body.lstrip("\t") if strip_tabs else body) == terminator:
                break
    return index


def _arg_declarations(arguments: str) -> Iterator[tuple[str, str | None]]:
    """``ARG a=1 b c="x y"`` -> ``(a, '1'), (b, None), (c, '"x y"')`` (defaults as written)."""
    for word in _split_words(arguments):
        name, sep, default = word.partition("=")
        if _NAME.fullmatch(name):
            yield name, (default if sep else None)


def _arg_default(written: str | None, env: Mapping[str, str], escape: str) -> str | None:
    """An ``ARG`` default, expanded against the args declared before it (as BuildKit does).
    A default that uses an unset variable counts as no default: a ``FROM`` using it is then
    reported as unresolved rather than silently built from a half-empty name."""
    if written is None:
        return None
    expanded = _expand(written, env, escape)
    return expanded.text if expanded.complete else None


def _stage_arg_value(
    name: str, default: str | None, build_args: Mapping[str, str],
    global_args: Mapping[str, str | None],
) -> str | None:
    if name in build_args:
        return build_args[name]
    if default is not None:
        return default
    return global_args.get(name)


def _from_env(
    global_args: Mapping[str, str | None], build_args: Mapping[str, str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, default in global_args.items():
        value = build_args.get(name, default)
        if value is not None:
            env[name] = value
    for name in PREDEFINED_PLATFORM_ARGS:
        if name in build_args and name not in env:
            env[name] = build_args[name]
    return env


def _parse_from(
    instruction: _Instruction, *, index: int, env: Mapping[str, str],
    stage_names: Mapping[str, int], escape: str, source: str,
) -> Stage:
    words = instruction.arguments.split()
    platform: str | None = None
    while words and words[0].startswith("--"):
        flag, _, value = words.pop(0)[2:].partition("=")
        if flag.lower() == "platform" and value:
            expanded = _expand(value, env, escape)
            platform = expanded.text if expanded.complete else value
    if not words:
        raise InputFileError(
            source, "FROM without an image: write FROM IMAGE (or FROM scratch)",
            line=instruction.line,
        )
    base = words[0]
    name: str | None = None
    if len(words) >= 3 and words[1].lower() == "as":
        name = words[2].lower()

    stage = Stage(
        index=index, line=instruction.line, base=base, resolved=None, reference=None,
        name=name, platform=platform,
    )
    expanded = _expand(base, env, escape)
    if not expanded.complete:
        return replace(stage, problem=expanded.why())
    resolved = expanded.text
    earlier = stage_names.get(resolved.lower())
    if earlier is not None:
        return replace(stage, resolved=resolved, from_stage=earlier)
    if resolved == SCRATCH:
        return replace(stage, resolved=resolved)
    if not resolved:
        return replace(stage, resolved=resolved, problem="the image name is empty")
    try:
        reference = ImageReference.parse(resolved)
    except InvalidReferenceError as error:
        return replace(stage, resolved=resolved, problem=error.reason)
    return replace(stage, resolved=resolved, reference=reference)


def _from_flags(keyword: str, arguments: str) -> Iterator[str]:
    """The ``--from`` values of a COPY, and the ``from=`` of each ``--mount`` of a RUN."""
    for word in arguments.split():
        if not word.startswith("--"):
            break
        flag, _, value = word[2:].partition("=")
        flag = flag.lower()
        if keyword == "copy" and flag == "from" and value:
            yield value
        elif keyword == "run" and flag == "mount":
            for option in value.split(","):
                key, _, option_value = option.partition("=")
                if key.strip().lower() == "from" and option_value:
                    yield option_value


def _resolve_from_flag(
    written: str, env: Mapping[str, str], stage_names: Mapping[str, int], stage_count: int,
    escape: str,
) -> tuple[ImageReference | None, str | None]:
    """The image a ``--from`` reads: ``(image, None)``, ``(None, None)`` for a stage, or
    ``(None, why)`` when it does not resolve. Only the stage's own ``ARG``\\ s are in scope."""
    expanded = _expand(written, env, escape)
    if not expanded.complete:
        return None, expanded.why(where="in this stage")
    text = expanded.text
    if _STAGE_INDEX.match(text) and int(text) < stage_count:
        return None, None
    if text.lower() in stage_names or text == SCRATCH:
        return None, None
    try:
        return ImageReference.parse(text), None
    except InvalidReferenceError as error:
        return None, error.reason


# -- words and variable substitution -----------------------------------------------------------


def _split_words(text: str) -> list[str]:
    """Split on white space outside quotes (quotes and escapes are kept for expansion)."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
            current.append(char)
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


@dataclass(slots=True)
class _Expansion:
    text: str
    unset: list[str]
    malformed: str | None = None

    @property
    def complete(self) -> bool:
        return not self.unset and self.malformed is None

    def why(self, *, where: str = "before the first FROM") -> str:
        if self.malformed is not None:
            return self.malformed
        names = ", ".join(dict.fromkeys(self.unset))
        return (
            f"variable {names} is not set: declare it with a default (ARG NAME=VALUE {where}) "
            "or give it as a build arg in the config"
        )


def _expand(word: str, env: Mapping[str, str], escape: str) -> _Expansion:
    """Shell-like expansion of one word, as BuildKit's ``shell.Lex`` does for ``FROM``."""
    result = _Expansion(text="", unset=[])
    result.text = _Expander(word, env, escape, result).run(stop=None)
    return result


class _Expander:
    def __init__(
        self, word: str, env: Mapping[str, str], escape: str, result: _Expansion
    ) -> None:
        self.word = word
        self.pos = 0
        self.env = env
        self.escape = escape
        self.result = result

    def peek(self) -> str:
        return self.word[self.pos] if self.pos < len(self.word) else ""

    def run(self, stop: str | None) -> str:
        """Expand until ``stop`` (a closing brace of a ``${...}`` word) or the end."""
        out: list[str] = []
        while self.pos < len(self.word):
            char = self.word[self.pos]
            if stop is not None and char == stop:
                return "".join(out)
            if char == self.escape:
                self.pos += 1
                if self.pos < len(self.word):
                    out.append(self.word[self.pos])
                    self.pos += 1
            elif char == "'":
                out.append(self.single_quoted())
            elif char == '"':
                out.append(self.double_quoted())
            elif char == "$":
                out.append(self.variable())
            else:
                out.append(char)
                self.pos += 1
        if stop is not None:
            self.result.malformed = "missing '}' in a ${...} variable"
        return "".join(out)

    def single_quoted(self) -> str:
        end = self.word.find("'", self.pos + 1)
        if end < 0:
            self.result.malformed = "unmatched single quote"
            text = self.word[self.pos + 1 :]
            self.pos = len(self.word)
            return text
        text = self.word[self.pos + 1 : end]
        self.pos = end + 1
        return text

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.word):
            char = self.word[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == self.escape and self.pos + 1 < len(self.word):
                following = self.word[self.pos + 1]
                if following in ('"', "$", self.escape):
                    out.append(following)
                else:
                    out.append(char + following)
                self.pos += 2
            elif char == "$":
                out.append(self.variable())
            else:
                out.append(char)
                self.pos += 1
        self.result.malformed = "unmatched double quote"
        return "".join(out)

    def variable(self) -> str:
        self.pos += 1  # the '$'
        if self.peek() == "{":
            return self.braced()
        match = _NAME.match(self.word, self.pos)
        if match is None:
            return "$"
        self.pos = match.end()
        return self.lookup(match.group(0))

    def lookup(self, name: str) -> str:
        value = self.env.get(name)
        if value is None:
            self.result.unset.append(name)
            return ""
        return value

    def braced(self) -> str:
        self.pos += 1  # the '{'
        match = _NAME.match(self.word, self.pos)
        if match is None:
            self.result.malformed = "bad variable name after '${'"
            self.pos = len(self.word)
            return ""
        name = match.group(0)
        self.pos = match.end()
        if self.peek() == "}":
            self.pos += 1
            return self.lookup(name)
        rest = self.word[self.pos :]
        for operator in (":-", ":+", ":?", "-", "+", "?"):
            if rest.startswith(operator):
                self.pos += len(operator)
                break
        else:
            self.result.malformed = (
                f"unsupported modifier in ${{{name}...}}: use :-, -, :+ or +"
            )
            self.pos = len(self.word)
            return ""
        # The word after the operator is expanded only when used; expand it into a scratch
        # result so that an unset variable in an unused default does not count.
        inner = _Expansion(text="", unset=[])
        saved = self.result
        self.result = inner
        alternative = self.run(stop="}")
        self.result = saved
        if inner.malformed is not None:
            self.result.malformed = inner.malformed
            return ""
        self.pos += 1  # the '}'
        value = self.env.get(name)
        is_set = value is not None
        non_empty = bool(value)
        use_word: bool
        if operator == ":-":
            use_word = not non_empty
        elif operator == "-":
            use_word = not is_set
        elif operator == ":+":
            use_word = non_empty
        elif operator == "+":
            use_word = is_set
        else:  # ':?' / '?': an error when unset (or empty), BuildKit fails the build
            if (operator == ":?" and not non_empty) or (operator == "?" and not is_set):
                self.result.unset.append(name)
                return ""
            return value or ""
        if use_word:
            self.result.unset.extend(inner.unset)
            return alternative
        if operator in (":+", "+"):
            return ""
        return value or ""

