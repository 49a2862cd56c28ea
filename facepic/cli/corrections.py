"""Corrections and recluster: `name`, `merge`, `not-same`, `move`, `reject`, `cover`, `hide`, `undo`,
`recluster`.
Each command calls one function of ``facepic.persons``, the same one any other front end calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from facepic.cli.group import cli, settings_of

if TYPE_CHECKING:
    from facepic.db import Library


def _persons_op(obj: dict, op: Callable[[Library, Any], str], alone: bool = False) -> None:
    """Run one change to persons against the library; print its one-line result. A change to
    one person shares the library with `facepic serve`; one to them all (``alone``) does not."""
    from facepic.changes import finish_pending
    from facepic.context import Context
    from facepic.derived import Covers
    from facepic.embedded import embedded_database

    settings = settings_of(obj)
    with embedded_database(settings, alone=alone) as settings, Context(settings) as ctx:
        covers = Covers(ctx)
        finish_pending(ctx.library, covers)  # a change the last process left midway first
        message = op(ctx.library, covers)
    click.echo(message)


@cli.command()
@click.argument("person")
@click.argument("name")
@click.pass_obj
def name(obj: dict, person: str, name: str) -> None:
    """Name a person (by id, id prefix or current name). A named person is never split or
    merged away by FacePic. Two persons may share a name; a name shared is then no longer a
    way to refer to either (use the id).

    Example:

        facepic name p3f2a9c1d Alice
    """
    from facepic.persons import name_person, others_named

    def op(lib: Library, covers: Any) -> str:
        named = name_person(lib, person, name)
        message = f"{named['_id']} is now {named['name']!r}"
        others = others_named(lib, named["name"], named["_id"])
        if others:
            verb = "is" if len(others) == 1 else "are"
            message += f"\nnote: {', '.join(others)} {verb} named {named['name']!r} too: refer to them by id"
        return message

    _persons_op(obj, op)


@cli.command()
@click.argument("target")
@click.argument("sources", nargs=-1, required=True)
@click.pass_obj
def merge(obj: dict, target: str, sources: tuple[str, ...]) -> None:
    """Merge persons SOURCES into TARGET: they are one person.

    Example:

        facepic merge Alice p91c0d2e7 p0aa81b33
    """
    from facepic.persons import merge_persons

    def op(lib: Library, covers: Any) -> str:
        merged = merge_persons(lib, target, list(sources), covers)
        return f"merged {len(sources)} person(s) into {merged['_id']}" + "".join(
            f"\nnote: the name {dropped!r} was dropped" for dropped in merged["dropped_names"]
        )

    _persons_op(obj, op)


@cli.command("not-same")
@click.argument("first")
@click.argument("second")
@click.pass_obj
def not_same(obj: dict, first: str, second: str) -> None:
    """Say that persons FIRST and SECOND are not one person (the answer no to "same person?"):
    settling and recluster never put them together, and they are not suggested again.
    `facepic undo` takes it back; `facepic merge` is the answer yes.

    Example:

        facepic not-same p3f2a9c1d p91c0d2e7
    """
    from facepic.persons import not_same as keep_apart

    def op(lib: Library, covers: Any) -> str:
        a, b = keep_apart(lib, first, second, covers)
        return f"{a} and {b} are not the same person: they stay apart and are not suggested again"

    _persons_op(obj, op)


@cli.command()
@click.argument("face_id")
@click.argument("person", required=False)
@click.option("--new", "new_person", is_flag=True, help="Move the face to a new person of its own.")
@click.pass_obj
def move(obj: dict, face_id: str, person: str | None, new_person: bool) -> None:
    """Move a face to PERSON (or --new); it stays there through new photos and recluster.

    Example:

        facepic move 1b9e...-f0 Alice
    """
    from facepic.persons import move_face

    if (person is None) == (not new_person):
        raise click.UsageError("give a PERSON or --new (not both)")
    _persons_op(obj, lambda lib, covers: f"face {face_id} is in person {move_face(lib, face_id, person, covers)}")


@cli.command()
@click.argument("face_id")
@click.pass_obj
def reject(obj: dict, face_id: str) -> None:
    """Not this person: the face leaves its person and never joins it again.

    Example:

        facepic reject 1b9e...-f0
    """
    from facepic.persons import reject_face

    _persons_op(obj, lambda lib, covers: f"face {face_id} left person {reject_face(lib, face_id, covers)}")


@cli.command()
@click.argument("person")
@click.argument("face_id")
@click.pass_obj
def cover(obj: dict, person: str, face_id: str) -> None:
    """Use FACE_ID as PERSON's cover; better faces arriving later do not replace it.

    Example:

        facepic cover Alice 1b9e...-f0
    """
    from facepic.persons import pick_cover

    def op(lib: Library, covers: Any) -> str:
        pick_cover(lib, person, face_id, covers)
        return f"face {face_id} is the cover of {person}"

    _persons_op(obj, op)


@cli.command()
@click.argument("person")
@click.option("--unhide", is_flag=True, help="Show the person again.")
@click.pass_obj
def hide(obj: dict, person: str, unhide: bool) -> None:
    """Hide a person from listings (its faces still go to it, not to new persons).

    Example:

        facepic hide p91c0d2e7
    """
    from facepic.persons import hide_person

    def op(lib: Library, covers: Any) -> str:
        doc = hide_person(lib, person, hidden=not unhide)
        return f"{doc['_id']} is {'shown' if unhide else 'hidden'}"

    _persons_op(obj, op)


@cli.command()
@click.pass_obj
def recluster(obj: dict) -> None:
    """Revisit every person: merge persons that are one identity, split ones that are not,
    and place faces left unassigned, never undoing a correction.

    Example:

        facepic recluster
    """
    from facepic.matching import Rules
    from facepic.persons import recluster_library

    def op(lib: Library, covers: Any) -> str:
        s = recluster_library(lib, Rules.from_settings(settings_of(obj)), covers)
        return (
            f"persons {s.persons_before} -> {s.persons_after} (created {s.persons_created}, "
            f"removed {s.persons_deleted}); faces moved {s.faces_moved}, newly assigned {s.faces_assigned}"
        )

    _persons_op(obj, op, alone=True)


@cli.command()
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Settle every face again (those the user placed or named stay), not only the new ones.",
)
@click.pass_obj
def settle(obj: dict, everything: bool) -> None:
    """Decide together the persons of the faces stored since the last settle, never undoing a
    correction. `facepic run` does this at its end; the index worker when its queue drains.

    Example:

        facepic settle
    """
    from facepic.matching import Rules
    from facepic.settle import Linkage, settle_library

    def op(lib: Library, covers: Any) -> str:
        settings = settings_of(obj)
        s = settle_library(
            lib, Linkage.from_settings(settings), covers, Rules.from_settings(settings), everything=everything
        )
        return (
            f"persons {s.persons_before} -> {s.persons_after} (created {s.persons_created}, "
            f"removed {s.persons_deleted}); faces moved {s.faces_moved}, newly assigned {s.faces_assigned}"
        )

    _persons_op(obj, op, alone=True)


@cli.command()
@click.pass_obj
def undo(obj: dict) -> None:
    """Undo the last correction (made here or on the page) not undone yet: its faces and
    persons as they were before it. Run again to undo the one before; the last 100 are kept.

    Example:

        facepic undo
    """
    from facepic.persons import undo_last

    def op(lib: Library, covers: Any) -> str:
        entry = undo_last(lib, covers)
        return f"undid the {entry['kind']} of {entry['at']} ({len(entry['faces'])} face(s), {len(entry['persons'])} person(s))"

    _persons_op(obj, op)
