"""A course's structure, read from what Open edX gives out, for names on block ids.

Tracking logs name blocks by id (``block-v1:Org+Course+Run+type@video+block@4f1c...``).
``edxstream course import PATH`` reads the structure behind those ids from one of:

- an **OLX export**, the ``.tar.gz`` Studio writes (Tools > Export), or its unpacked
  folder: ``course.xml`` points at ``course/<run>.xml``, whose ``<chapter>`` children
  (sections) hold ``<sequential>`` children (subsections), which hold ``<vertical>``
  units, which hold the components (``<video>``, ``<problem>``, ``<html>``, ...). Each
  child is either written inline or a pointer (``<chapter url_name="x"/>``) to
  ``chapter/x.xml``; ``policies/<run>/policy.json`` may override a block's settings.
  Graded, format and due are set on subsections and hold for everything inside them;
- a saved response of the LMS **Course Blocks API**
  (``/api/courses/v2/blocks/?course_id=...&all_blocks=true&depth=all&requested_fields=...``):
  ``{"root": usage key, "blocks": {usage key: {"type", "display_name", "graded",
  "format", "due", "children", "student_view_data", ...}}}``.

Either way the result is one :class:`Block` per block, in outline order, with its
section and subsection, which :func:`store` writes to the ClickHouse table
``course_blocks``. The analyst views join that table at query time, so importing a
structure after the events names them without reprocessing anything.

Parsing is pure (:func:`read_olx`, :func:`read_blocks_api`); the archive is read in
memory, never unpacked to disk, and its XML is parsed without entity expansion
(defusedxml): an export is a file from elsewhere.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from edxstream.core.errors import UserError

UTC = timezone.utc

# Tags that are containers of the outline rather than components.
CONTAINERS = ("course", "chapter", "sequential", "vertical")
# Attributes of a pointer element (<chapter url_name="x"/>): anything else makes it inline.
_POINTER_ATTRS = {"url_name", "filename"}
# Largest file the importer reads from an archive: course XML files are small.
MAX_MEMBER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Block:
    """One block of a course, as the ``course_blocks`` table stores it (field order =
    column order, without ``source`` and ``imported_at``, which :func:`store` adds)."""

    course_id: str
    block_id: str  # usage key
    block_key: str  # the usage key's last part: what video events and i4x ids carry
    block_type: str
    display_name: str
    chapter_id: Optional[str]
    chapter_name: Optional[str]
    sequential_id: Optional[str]
    sequential_name: Optional[str]
    position: int  # order in the outline, from 0 (the course itself)
    graded: bool
    assignment_type: str  # the subsection's grading format (Homework, Exam, ...), or ""
    weight: Optional[float]
    due: Optional[datetime]
    video_duration: Optional[float]  # seconds, when the structure says


@dataclass(frozen=True)
class Structure:
    course_id: str
    source: str  # olx | blocks_api
    blocks: tuple[Block, ...]

    def count(self, block_type: str) -> int:
        return sum(1 for b in self.blocks if b.block_type == block_type)


BLOCK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Block)) + ("source", "imported_at")


def parse_due(value) -> Optional[datetime]:
    """A due date as OLX and the Blocks API write it (ISO 8601, ``Z`` or an offset, or
    none: UTC; older exports quote it as a JSON string), in UTC; None when absent or
    unreadable."""
    if not isinstance(value, str) or not value.strip() or value.strip() in ("null", "None"):
        return None
    text = value.strip().strip('"')
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().strip('"').lower() == "true"


def _float(value) -> Optional[float]:
    try:
        f = float(str(value).strip('"'))
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def block_key_of(usage_key: str) -> str:
    """block-v1:...+type@video+block@abc -> abc; i4x://Org/Course/video/abc -> abc."""
    return usage_key.rsplit("@", 1)[-1] if "@" in usage_key else usage_key.rstrip("/").rsplit("/", 1)[-1]


# --- OLX --------------------------------------------------------------------------------


class _Files:
    """The files of an export, by path relative to its top folder (the one holding
    ``course.xml``)."""

    def __init__(self, files: dict[str, bytes], origin: str):
        tops = sorted((p for p in files if PurePosixPath(p).name == "course.xml"), key=lambda p: p.count("/"))
        if not tops:
            raise UserError(f"{origin}: no course.xml: not an OLX course export")
        prefix = tops[0][: -len("course.xml")]
        self.files = {p[len(prefix) :]: b for p, b in files.items() if p.startswith(prefix)}
        self.origin = origin

    def xml(self, path: str) -> Optional[Element]:
        data = self.files.get(path)
        if data is None:
            return None
        try:
            return SafeET.fromstring(data)
        except Exception as exc:  # ParseError and defusedxml's refusals
            raise UserError(f"{self.origin}: {path} is not readable XML: {exc}") from None

    def json(self, path: str) -> dict:
        data = self.files.get(path)
        if data is None:
            return {}
        try:
            got = json.loads(data)
        except ValueError as exc:
            raise UserError(f"{self.origin}: {path} is not readable JSON: {exc}") from None
        return got if isinstance(got, dict) else {}


def _archive_files(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:*") as tar:
            out = {}
            for member in tar:
                if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    continue
                name = member.name.lstrip("./")
                if not (name.endswith(".xml") or name.endswith(".json")):
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    out[name] = f.read()
            return out
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{path}: not a readable .tar.gz course export: {exc}") from None


def _folder_files(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in path.rglob("*")
        if p.is_file() and p.suffix in (".xml", ".json") and p.stat().st_size <= MAX_MEMBER_BYTES
    }


def _resolve(files: _Files, el: Element) -> tuple[Element, str]:
    """The element that defines a block (its own file for a pointer) and its url_name."""
    name = el.get("url_name") or el.get("filename") or ""
    if name and set(el.attrib) <= _POINTER_ATTRS and len(el) == 0:
        found = files.xml(f"{el.tag}/{name.replace(':', '/')}.xml")
        if found is not None:
            return found, name
    return el, name


def read_olx(files: dict[str, bytes], origin: str = "export") -> Structure:
    """The structure of an OLX export given as {path: bytes} (pure)."""
    fs = _Files(files, origin)
    root = fs.xml("course.xml")
    org, number, run = root.get("org"), root.get("course"), root.get("url_name")
    if not (org and number and run):
        raise UserError(f"{origin}: course.xml names no org, course and url_name (the run)")
    course_id = f"course-v1:{org}+{number}+{run}"
    policy = fs.json(f"policies/{run}/policy.json")
    course_el = fs.xml(f"course/{run}.xml")
    if course_el is None:
        course_el = root
    blocks: list[Block] = []
    used: set[str] = set()

    def settings_of(tag: str, name: str, el: Element) -> dict:
        merged = dict(el.attrib)
        over = policy.get(f"{tag}/{name}")
        if isinstance(over, dict):
            merged.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in over.items()})
        return merged

    def walk(
        el: Element,
        name: str,
        chapter: Optional[tuple[str, str]],
        seq: Optional[tuple[str, str]],
        inherited: tuple[bool, str, Optional[datetime]],
    ) -> None:
        tag = el.tag
        if not name:  # an inline block without a name: one from its place in the outline
            name = f"{tag}_{len(blocks)}"
        while name in used:
            name += "_"
        used.add(name)
        attrs = settings_of(tag, name, el)
        usage = f"block-v1:{org}+{number}+{run}+type@{tag}+block@{name}"
        display = attrs.get("display_name") or ""
        graded, fmt, due = inherited
        if "graded" in attrs:
            graded = _bool(attrs["graded"])
        fmt = attrs.get("format", fmt) or ""
        due = parse_due(attrs.get("due")) or due
        if tag == "chapter":
            chapter = (usage, display)
        elif tag == "sequential":
            seq = (usage, display)
        blocks.append(
            Block(
                course_id=course_id,
                block_id=usage,
                block_key=name,
                block_type=tag,
                display_name=display,
                chapter_id=chapter[0] if chapter and tag != "chapter" else None,
                chapter_name=chapter[1] if chapter and tag != "chapter" else None,
                sequential_id=seq[0] if seq and tag not in ("chapter", "sequential") else None,
                sequential_name=seq[1] if seq and tag not in ("chapter", "sequential") else None,
                position=len(blocks),
                graded=graded,
                assignment_type=fmt if graded else "",
                weight=_float(attrs.get("weight")) if "weight" in attrs else None,
                due=due,
                video_duration=_float(attrs.get("duration")) if tag == "video" else None,
            )
        )
        if tag not in CONTAINERS:
            return  # a component: what is inside is its content, not blocks
        for child in el:
            if not isinstance(child.tag, str) or child.tag in ("wiki", "textbook") or child.tag.startswith("{"):
                continue
            child_el, child_name = _resolve(fs, child)
            walk(child_el, child_name, chapter, seq, (graded, fmt, due))

    walk(course_el, "course", None, None, (False, "", None))
    return Structure(course_id, "olx", tuple(blocks))


# --- Course Blocks API ----------------------------------------------------------------


def read_blocks_api(doc: dict, origin: str = "response") -> Structure:
    """The structure of a Course Blocks API response (pure): the outline is the tree of
    ``children`` from ``root``, in order."""
    blocks_in = doc.get("blocks") if isinstance(doc, dict) else None
    root = doc.get("root") if isinstance(doc, dict) else None
    if not isinstance(blocks_in, dict) or not isinstance(root, str) or root not in blocks_in:
        raise UserError(f'{origin}: not a Course Blocks API response (no root block in "blocks")')
    course_id = _course_of_root(root)
    out: list[Block] = []
    seen: set[str] = set()

    def walk(key: str, chapter, seq) -> None:
        b = blocks_in.get(key)
        if not isinstance(b, dict) or key in seen:
            return
        seen.add(key)
        tag = str(b.get("type") or "")
        display = str(b.get("display_name") or "")
        if tag == "chapter":
            chapter = (key, display)
        elif tag == "sequential":
            seq = (key, display)
        graded = _bool(b.get("graded", False))
        view = b.get("student_view_data") if isinstance(b.get("student_view_data"), dict) else {}
        out.append(
            Block(
                course_id=course_id,
                block_id=key,
                block_key=str(b.get("block_id") or block_key_of(key)),
                block_type=tag,
                display_name=display,
                chapter_id=chapter[0] if chapter and tag != "chapter" else None,
                chapter_name=chapter[1] if chapter and tag != "chapter" else None,
                sequential_id=seq[0] if seq and tag not in ("chapter", "sequential") else None,
                sequential_name=seq[1] if seq and tag not in ("chapter", "sequential") else None,
                position=len(out),
                graded=graded,
                assignment_type=str(b.get("format") or "") if graded else "",
                weight=_float(b.get("weight")) if b.get("weight") is not None else None,
                due=parse_due(b.get("due")),
                video_duration=_float(view.get("duration")) if tag == "video" and view.get("duration") else None,
            )
        )
        for child in b.get("children") or ():
            walk(child, chapter, seq)

    walk(root, None, None)
    return Structure(course_id, "blocks_api", tuple(out))


def _course_of_root(root: str) -> str:
    if root.startswith("block-v1:") and "+type@" in root:
        return "course-v1:" + root[len("block-v1:") : root.index("+type@")]
    if root.startswith("i4x://"):
        org, number, _, run = root[len("i4x://") :].split("/")[:4]
        return f"course-v1:{org}+{number}+{run}"
    raise UserError(f"root block {root!r} is not a course usage key")


# --- reading a path, storing ------------------------------------------------------------


def read_structure(path: Path) -> Structure:
    """An OLX export (``.tar.gz`` or its folder) or a saved Blocks API response (JSON)."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_olx(_folder_files(path), str(path))
    head = path.open("rb").read(2)
    if head == b"\x1f\x8b" or tarfile.is_tarfile(path):
        return read_olx(_archive_files(path), str(path))
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise UserError(
            f"{path}: neither an OLX course export (.tar.gz) nor a Course Blocks API response (JSON)"
        ) from None
    return read_blocks_api(doc, str(path))


def rows(structure: Structure, imported_at: datetime) -> Iterator[list]:
    for b in structure.blocks:
        yield [*astuple(b), structure.source, imported_at]


def store(client, structure: Structure, imported_at: Optional[datetime] = None) -> int:
    """Write the blocks to ``course_blocks``; blocks of an earlier import of the course
    that are gone from this one are removed. Returns the rows written."""
    when = imported_at or datetime.now(UTC)
    data = list(rows(structure, when))
    if data:
        client.insert("course_blocks", data, column_names=list(BLOCK_COLUMNS))
    # a block deleted from the course since the last import must not keep its name
    client.command(
        "ALTER TABLE course_blocks DELETE WHERE course_id = {c:String} AND imported_at < {t:DateTime64(3)}",
        parameters={"c": structure.course_id, "t": when.astimezone(UTC).replace(tzinfo=None)},
    )
    return len(data)
