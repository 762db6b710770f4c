"""`omnigateway new-connector NAME`: a connector package skeleton that passes the conformance kit.

The skeleton is a working connector for a simple JSON provider (HMAC-signed webhooks in, a
bearer-token JSON API out) with a fake of that provider and a conformance test module, so that it
installs and passes the kit before the integrator writes any provider-specific code, and each
step of making it speak the real provider keeps a green suite. Templates are package data under
templates/, filled with string.Template (``$name``; a literal dollar is ``$$``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# template file -> path in the skeleton, with {package} filled in
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "connector.py.tmpl": "src/{package}/connector.py",
    "testing.py.tmpl": "src/{package}/testing.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


class ScaffoldError(ValueError):
    pass


@dataclass(frozen=True)
class Names:
    """Everything the templates call the new connector."""

    kind: str  # acme_chat: the entry-point name and the class's `kind`
    package: str  # omnigateway_acme_chat
    dist: str  # omnigateway-acme-chat
    camel: str  # AcmeChat
    cls: str  # AcmeChatConnector
    title: str  # Acme Chat
    upper: str  # ACME_CHAT

    @classmethod
    def of(cls, kind: str) -> Names:
        if not NAME.match(kind):
            raise ScaffoldError(
                f"connector name {kind!r} is not usable as a kind: use lowercase letters, digits and '_', starting "
                "with a letter, at most 40 characters (e.g. acme_chat)"
            )
        words = [w for w in kind.split("_") if w]
        camel = "".join(w[:1].upper() + w[1:] for w in words)
        return cls(
            kind=kind,
            package=f"omnigateway_{kind}",
            dist=f"omnigateway-{kind.replace('_', '-')}",
            camel=camel,
            cls=f"{camel}Connector",
            title=" ".join(w[:1].upper() + w[1:] for w in words),
            upper=kind.upper(),
        )


def default_directory(kind: str) -> Path:
    return Path(Names.of(kind).dist)


def write_skeleton(kind: str, directory: Path | None = None) -> list[Path]:
    """Write the package for connector `kind` into `directory` (created; must be empty if it exists).

    Returns the files written. Raises ScaffoldError for a bad name or a non-empty directory.
    """
    names = Names.of(kind)
    target = Path(directory) if directory is not None else default_directory(kind)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty directory; choose another --dir")
    values = {field: getattr(names, field) for field in names.__dataclass_fields__}
    templates = resources.files(__package__) / "templates"
    written: list[Path] = []
    for template, relative in FILES.items():
        text = Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
        path = target / relative.format(package=names.package)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    package_dir = target / "src" / names.package
    for extra, text in (("__init__.py", f'"""{names.title} connector for omnichannel-gateway."""\n'),
                        ("py.typed", "")):
        (package_dir / extra).write_text(text, encoding="utf-8")
        written.append(package_dir / extra)
    return written


__all__ = ["FILES", "Names", "ScaffoldError", "default_directory", "write_skeleton"]
