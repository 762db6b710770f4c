"""The voice's templates, compiled once in Jinja2's sandbox and proved before any customer reads one.

Every greeting, sign-off and intent text is parsed and compiled at load, its variables checked
against what a message's context holds, and then rendered against a sample context (every
`variables.*` a placeholder). A syntax error, an unknown variable or a sandbox violation
(`{{ ''.__class__ }}`) names the template (intent, locale, channel), the variable and the line of
voice.toml, and the voice is refused. Agents' own text never goes through here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from conversation.voice.config import VoiceConfig, VoiceError, line_of

# What a message's context holds; `variables` is whatever the request gives.
CONTEXT_FIELDS: Mapping[str, frozenset[str] | None] = {
    "customer": frozenset({"name", "first_name", "locale", "tier"}),
    "agent": frozenset({"name"}),
    "conversation": frozenset({"reference", "queue", "channel"}),
    "brand": frozenset({"name"}),
    "variables": None,
}


class Placeholders:
    """`variables` in the sample context: any name is there, as "[name]"."""

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"[{name}]"

    def __getitem__(self, name: str) -> str:
        return f"[{name}]"


def sample_context(brand: str) -> dict[str, Any]:
    return {
        "customer": {"name": "Ana López", "first_name": "Ana", "locale": "es", "tier": "standard"},
        "agent": {"name": "Luis"},
        "conversation": {"reference": "ab12cd34", "queue": "default", "channel": "email"},
        "brand": {"name": brand},
        "variables": Placeholders(),
    }


@dataclass(frozen=True)
class Key:
    """Which template: a greeting or sign-off of a register, or an intent (maybe per channel)."""

    kind: str  # "greeting", "sign_off", "intent"
    name: str  # the register, or the intent's name
    locale: str
    channel: str | None = None

    def __str__(self) -> str:
        where = f"{self.kind} {self.name!r}" if self.kind != "intent" else f"intent {self.name!r}"
        return where + f" ({self.locale}" + (f", {self.channel})" if self.channel else ")")

    def table(self) -> str:
        if self.kind == "intent":
            return f"intents.{self.name}" + (f".{self.channel}" if self.channel else "")
        return f"{'greetings' if self.kind == 'greeting' else 'sign_offs'}.{self.name}"


def environment() -> SandboxedEnvironment:
    # Plain text out: escaping is the channel renderer's job (HTML email escapes there).
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                                finalize=lambda value: "" if value is None else value)


class Templates:
    """Every template of a voice, compiled; `render` fills one for a message."""

    def __init__(self, voice: VoiceConfig) -> None:
        self.env = environment()
        self.compiled: dict[Key, jinja2.Template] = {}
        for key, source in _sources(voice):
            self.compiled[key] = self._compile(voice, key, source)
        sample = sample_context(voice.brand.name)
        for key, template in self.compiled.items():
            try:
                template.render(sample)
            except SecurityError as exc:
                raise _error(voice, key, f"is refused by the sandbox: {exc}") from None
            except jinja2.UndefinedError as exc:
                raise _error(voice, key, f"uses an unknown variable: {exc}") from None
            except Exception as exc:  # a filter on the wrong type, a division by zero...
                raise _error(voice, key, f"fails on a sample message: {type(exc).__name__}: {exc}") from None

    def _compile(self, voice: VoiceConfig, key: Key, source: str) -> jinja2.Template:
        try:
            tree = self.env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise _error(voice, key, f"has a syntax error: {exc.message}") from None
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name not in CONTEXT_FIELDS:
                raise _error(voice, key, f"uses the unknown variable {name!r} (known: "
                                         f"{', '.join(f'{k}.*' for k in CONTEXT_FIELDS)})")
        for path in _attribute_paths(tree):
            root, _, attr = path.partition(".")
            fields = CONTEXT_FIELDS.get(root)
            if fields is not None and attr not in fields:
                raise _error(voice, key, f"uses the unknown variable {path!r} ({root} has "
                                         f"{', '.join(sorted(fields))})")
        return self.env.from_string(tree)

    def has(self, key: Key) -> bool:
        return key in self.compiled

    def render(self, key: Key, context: Mapping[str, Any]) -> str:
        return self.compiled[key].render(context).strip()


def _sources(voice: VoiceConfig) -> Iterator[tuple[Key, str]]:
    for register, by_locale in voice.greetings.items():
        for locale, source in by_locale.items():
            yield Key("greeting", register, locale), source
    for register, by_locale in voice.sign_offs.items():
        for locale, source in by_locale.items():
            yield Key("sign_off", register, locale), source
    for intent in voice.intents.values():
        for locale, source in intent.texts.items():
            yield Key("intent", intent.name, locale), source
        for channel, by_locale in intent.channels.items():
            for locale, source in by_locale.items():
                yield Key("intent", intent.name, locale, channel), source


def _attribute_paths(tree: nodes.Template) -> Iterator[str]:
    """"root.attr" for every `root.attr` / `root["attr"]` on a context variable."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            yield f"{node.node.name}.{node.attr}"
        elif (isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.ctx == "load"
              and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)):
            yield f"{node.node.name}.{node.arg.value}"


def _error(voice: VoiceConfig, key: Key, problem: str) -> VoiceError:
    return VoiceError(f"{voice.source}{line_of(voice.text, key.table(), key.locale)}: {key} {problem}")


__all__ = ["CONTEXT_FIELDS", "Key", "Placeholders", "Templates", "sample_context"]
