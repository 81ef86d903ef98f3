"""What a tenant or a job asks to redact, how the values are replaced, and what is kept.

A policy is spelled the way the API takes it: ``redact=pci,ssn,email`` (or ``none``), plus a
substitution style and a keep mode. ``Policy.parse`` is the one validator; everything else
works on the parsed, frozen value and its canonical spelling (``Policy.spec``), which is what
the jobs table, the api_keys table and the AudioStored event carry.
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

from libs.errors import InvalidInput


class EntityClass(enum.StrEnum):
    CREDIT_CARD = "credit_card"
    CVV = "cvv"
    EXPIRY = "expiry"
    SSN = "ssn"
    EMAIL = "email"
    PHONE = "phone"
    DOB = "dob"

    @property
    def label(self) -> str:
        """The entity-name substitution, e.g. ``[CREDIT_CARD]``."""
        return f"[{self.value.upper()}]"


# Group names a caller may use besides the class names themselves.
GROUPS: dict[str, frozenset[EntityClass]] = {
    "pci": frozenset({EntityClass.CREDIT_CARD, EntityClass.CVV, EntityClass.EXPIRY}),
    "pii": frozenset(EntityClass),
    "card": frozenset({EntityClass.CREDIT_CARD}),
}

Substitution = Literal["entity", "mask", "last4"]
Keep = Literal["redacted", "both"]
AudioMode = Literal["none", "beep", "silence"]
SUBSTITUTIONS: tuple[Substitution, ...] = ("entity", "mask", "last4")
KEEPS: tuple[Keep, ...] = ("redacted", "both")
AUDIO_MODES: tuple[AudioMode, ...] = ("none", "beep", "silence")

# Longest accepted value of any redact field: the full list of names fits with room to spare.
MAX_SPEC_CHARS = 200


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    classes: frozenset[EntityClass] = frozenset()
    # entity: [CREDIT_CARD]; mask: digits become '#' (cards grouped by four), other classes
    # "####"; last4: cards keep their last four digits, other classes use the entity name.
    substitution: Substitution = "entity"
    # redacted: the unredacted transcript is never stored or published; both: the original is
    # also stored, under a separate key, flagged.
    keep: Keep = "redacted"
    # A redacted copy of the audio, each redacted span beeped or silenced (with keep=redacted
    # it then replaces the original).
    audio: AudioMode = "none"

    @property
    def active(self) -> bool:
        return bool(self.classes)

    @property
    def spec(self) -> str:
        """Canonical spelling: ``credit_card,cvv;substitution=entity;keep=redacted`` or ``""``."""
        if not self.classes:
            return ""
        names = ",".join(sorted(c.value for c in self.classes))
        spec = f"{names};substitution={self.substitution};keep={self.keep}"
        return spec if self.audio == "none" else f"{spec};audio={self.audio}"

    @classmethod
    def from_spec(cls, spec: str) -> Policy:
        """Reads what ``spec`` wrote (or any value ``parse`` accepts as its class list)."""
        if not spec:
            return NO_REDACTION
        names, _, rest = spec.partition(";")
        options = dict(part.partition("=")[::2] for part in rest.split(";") if part)
        return cls.parse(
            names,
            substitution=options.get("substitution", "entity"),
            keep=options.get("keep", "redacted"),
            audio=options.get("audio", "none"),
        )

    @classmethod
    def parse(
        cls,
        names: str,
        *,
        substitution: str = "entity",
        keep: str = "redacted",
        audio: str = "none",
    ) -> Policy:
        """Validates caller input; raises InvalidInput (code invalid_redact) naming the bad part (never echoing
        more than a short, printable excerpt of it)."""
        if len(names) > MAX_SPEC_CHARS:
            raise InvalidInput(
                f"redact is longer than {MAX_SPEC_CHARS} characters", code="invalid_redact"
            )
        classes: set[EntityClass] = set()
        saw_none = False
        for raw in names.split(","):
            name = raw.strip().lower()
            if not name:
                continue
            if name == "none":
                saw_none = True
            elif name in GROUPS:
                classes |= GROUPS[name]
            elif name in EntityClass._value2member_map_:
                classes.add(EntityClass(name))
            else:
                shown = name if name.isascii() and name.isprintable() and len(name) <= 20 else "?"
                raise InvalidInput(
                    f"redact: unknown class {shown!r}; expected none, pci, pii or "
                    + ", ".join(c.value for c in EntityClass),
                    code="invalid_redact",
                )
        if saw_none and classes:
            raise InvalidInput(
                "redact: none cannot be combined with other classes", code="invalid_redact"
            )
        if substitution not in SUBSTITUTIONS:
            raise InvalidInput(
                f"redact_substitution must be one of {', '.join(SUBSTITUTIONS)}",
                code="invalid_redact",
            )
        if keep not in KEEPS:
            raise InvalidInput(
                f"redact_keep must be one of {', '.join(KEEPS)}", code="invalid_redact"
            )
        if audio not in AUDIO_MODES:
            raise InvalidInput(
                f"redact_audio must be one of {', '.join(AUDIO_MODES)}", code="invalid_redact"
            )
        if audio != "none" and not classes:
            raise InvalidInput("redact_audio needs redact classes", code="invalid_redact")
        return cls(
            classes=frozenset(classes),
            substitution=substitution,
            keep=keep,
            audio=audio,
        )


NO_REDACTION = Policy()
