"""Frame numbers: Deadline-style frame specs and image-sequence patterns.

Frame specs follow Deadline's frame-list syntax, which farm submitters already speak:
``1001-1100``, ``1-100x5`` (also ``step5``, ``by5``, ``:5``), ``1,5,10-20`` and negative frames
``-5--1``. Parsing returns a sorted list without duplicates, so a reversed range such as ``10-1`` is
refused rather than quietly read as ``1-10``: the order it asks for would be lost.

Sequence patterns name the frame number with a token in the file name: ``name.####.exr`` (Nuke, one
``#`` per digit), ``name.%04d.exr`` (printf) or ``name.$F4.exr`` (Houdini). Frame numbers are formatted
with printf semantics (``%04d`` of -5 is ``-005``) so a pattern means the same thing here as in the
host application that wrote the files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from daflow_vfx.errors import FrameSpecError

__all__ = ["parse_frame_spec", "parse_frames_option", "format_frame_spec", "frames_phrase", "SequencePattern"]

# One term of a frame spec: a frame, or a range with an optional step.
# Numbers may be negative, so "-5--1" is the range -5..-1.
_TERM = re.compile(
    r"^(?P<start>[+-]?\d+)"
    r"(?:\s*-\s*(?P<end>[+-]?\d+)(?:\s*(?:x|step|by|:)\s*(?P<step>[+-]?\d+))?)?$",
    re.IGNORECASE,
)

# Largest spec we expand: protects against a typo such as "1-1000000000" eating the memory.
_MAX_FRAMES = 10_000_000


def parse_frame_spec(spec: str) -> list[int]:
    """Expand a Deadline frame spec into sorted, unique frame numbers.

    ``"1001-1003"`` -> ``[1001, 1002, 1003]``; ``"1-10x3"`` -> ``[1, 4, 7, 10]``;
    ``"1,5,10-12"`` -> ``[1, 5, 10, 11, 12]``; ``"-3--1"`` -> ``[-3, -2, -1]``.
    Terms are separated by commas or whitespace. Raises :class:`FrameSpecError` for anything else.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise FrameSpecError(f"empty frame spec {spec!r}; give frames like 1001-1100, 1-100x5 or 1,5,10-20")
    frames: set[int] = set()
    for term in re.split(r"[,\s]+", spec.strip()):
        if not term:
            continue
        match = _TERM.match(term)
        if match is None:
            raise FrameSpecError(
                f"frame spec {spec!r}: cannot read {term!r}; use frames like 1001-1100, 1-100x5 or 1,5,10-20"
            )
        start = int(match["start"])
        if match["end"] is None:
            frames.add(start)
            continue
        end = int(match["end"])
        step = int(match["step"]) if match["step"] is not None else 1
        if step <= 0:
            raise FrameSpecError(f"frame spec {spec!r}: step in {term!r} must be a positive whole number")
        if end < start:
            # Frames are always rendered in ascending order, so the reverse order asked for cannot be
            # honoured; a swapped range on a farm is far more often a typo than a wish.
            lowest = start - (start - end) // step * step
            ascending = f"{lowest}-{start}" + (f"x{step}" if match["step"] is not None else "")
            raise FrameSpecError(f"frame spec {spec!r}: {term!r} runs backwards; frames are rendered in "
                                 f"ascending order, write {ascending}")
        if (end - start) // step + 1 > _MAX_FRAMES:
            raise FrameSpecError(f"frame spec {spec!r}: {term!r} expands to too many frames; check the range")
        frames.update(range(start, end + 1, step))
    if not frames:
        raise FrameSpecError(f"empty frame spec {spec!r}; give frames like 1001-1100, 1-100x5 or 1,5,10-20")
    return sorted(frames)


def parse_frames_option(spec: str, param: str = "frames") -> list[int]:
    """:func:`parse_frame_spec` for the argument ``param``: its errors name the parameter, so the command
    line shows the flag (an empty farm substitution reads ``--frames: empty frame spec ''``)."""
    try:
        return parse_frame_spec(spec)
    except FrameSpecError as exc:
        raise FrameSpecError(f"`{param}`: {exc}", param=param) from None


def frames_phrase(frames: list[int], singular: str = "", plural: str = "") -> str:
    """Frames named as a sentence reads them: ``[6]`` -> ``"frame 6 is missing"`` and ``[6, 7]`` ->
    ``"frames 6, 7 are missing"`` for ``singular="is missing"``, ``plural="are missing"``; more than ten
    frames are written as a spec (``frames 1-40,45``)."""
    values = sorted(set(int(f) for f in frames))
    if len(values) == 1:
        return f"frame {values[0]} {singular}".rstrip()
    listed = ", ".join(str(f) for f in values) if len(values) <= 10 else format_frame_spec(values)
    return f"frames {listed} {plural}".rstrip()


def format_frame_spec(frames: list[int]) -> str:
    """Write frame numbers as a compact spec that :func:`parse_frame_spec` reads back to the same set.

    Consecutive runs become ranges (``[1, 2, 3, 5]`` -> ``"1-3,5"``) and evenly stepped runs of three or
    more become stepped ranges (``[1, 6, 11]`` -> ``"1-11x5"``). Empty input gives ``""``.
    """
    values = sorted(set(int(f) for f in frames))
    parts: list[str] = []
    i = 0
    while i < len(values):
        start = values[i]
        if i + 1 == len(values):
            parts.append(str(start))
            break
        step = values[i + 1] - start
        j = i + 1
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        count = j - i + 1
        if step == 1:
            parts.append(f"{start}-{values[j]}")
            i = j + 1
        elif count >= 3:
            parts.append(f"{start}-{values[j]}x{step}")
            i = j + 1
        else:
            # Two frames with a gap read better as a list than as a stepped range.
            parts.append(str(start))
            i += 1
    return ",".join(parts)


# Frame tokens, searched in the file name only (a folder called "v%02d" is not a frame token).
_TOKENS = re.compile(r"(?P<hash>#+)|(?P<printf>%(?:0?(?P<pw>\d+))?d)|(?P<houdini>\$F(?P<hw>\d*))")


@dataclass(frozen=True)
class SequencePattern:
    """An image-sequence path with a frame token, such as ``/plates/sh010.####.exr``.

    ``prefix`` is everything before the token (folder included), ``suffix`` everything after it,
    ``padding`` the minimum number of digits (1 for an unpadded ``#``, ``%d`` or ``$F``) and
    ``style`` one of ``"hash"``, ``"printf"``, ``"houdini"``.
    """

    prefix: str
    padding: int
    suffix: str
    style: str
    # The token exactly as written, so str() gives back the pattern as given; not part of equality.
    token: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(cls, path: str | os.PathLike) -> SequencePattern | None:
        """Parse a path with a frame token; ``None`` when the file name holds no token."""
        text = os.fspath(path)
        name = os.path.basename(text)
        matches = list(_TOKENS.finditer(name))
        if not matches:
            return None
        # The last token is the frame number: "comp_v#.####.exr" would be odd, but the frame goes last.
        match = matches[-1]
        if match["hash"]:
            style, padding = "hash", len(match["hash"])
        elif match["printf"]:
            style, padding = "printf", int(match["pw"]) if match["pw"] else 1
        else:
            style, padding = "houdini", int(match["hw"]) if match["hw"] else 1
        # Slice the original text so the prefix keeps the folder exactly as given.
        prefix = text[: len(text) - len(name) + match.start()]
        return cls(prefix=prefix, padding=max(padding, 1), suffix=name[match.end():], style=style,
                   token=match.group(0))

    def path(self, frame: int) -> str:
        """The file path for one frame (printf ``%0Nd`` formatting, so -5 with padding 4 is ``-005``)."""
        return f"{self.prefix}{int(frame):0{self.padding}d}{self.suffix}"

    def scan(self) -> list[int]:
        """Frame numbers whose files exist on disk, sorted.

        A file counts only when formatting its number with this pattern gives back its exact name,
        so ``shot.####.exr`` ignores ``shot.01.exr`` and ``shot.1001.exr.tmp``.
        """
        folder, name_prefix = os.path.split(self.prefix)
        folder = folder or "."
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []
        number = re.compile(re.escape(name_prefix) + r"([+-]?\d+)" + re.escape(self.suffix) + "$")
        frames: list[int] = []
        for name in names:
            match = number.match(name)
            if match is None:
                continue
            frame = int(match.group(1))
            if os.path.basename(self.path(frame)) == name:
                frames.append(frame)
        return sorted(set(frames))

    def __str__(self) -> str:
        token = self.token or {
            "hash": "#" * self.padding,
            "printf": f"%0{self.padding}d",
            "houdini": f"$F{self.padding}",
        }[self.style]
        return f"{self.prefix}{token}{self.suffix}"
