"""Each database function (and the record types they take) has one home: its own file under
ledger/sql/, its SET options inside the definition. Migrations apply those files; they never
copy them.

A revision names the files it applies with the SHA-256 of the content it was written for
(`apply(op.execute, {"tf_write_batch": "3f2a…"})`). A file whose content has changed since is
skipped there: the newer revision that names its new hash applies it. So a fresh database
creates each object once, at the revision of its current definition, and an existing one is
brought up to date by that revision; tests/db/test_sqlfiles.py checks that every file's current
hash is named by some revision, and that the live catalog matches the files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from tokens_forge.db.sql import run_script

SQL_DIR = Path(__file__).resolve().parents[1] / "ledger" / "sql"
_OBJECT = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|TYPE)\s+(\w+)", re.IGNORECASE | re.MULTILINE)


def names() -> list[str]:
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def source(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def digest(name: str) -> str:
    return hashlib.sha256(source(name).encode()).hexdigest()[:16]


def object_of(name: str) -> tuple[str, str]:
    """(kind, name) of the one object a file creates: ('FUNCTION' | 'TYPE', its name)."""
    found = _OBJECT.findall(source(name))
    if len(found) != 1 or found[0][1] != name:
        raise ValueError(f"{name}.sql must create exactly one function or type named {name}")
    return found[0][0].upper(), found[0][1]


def _drop(name: str, kind: str) -> str:
    if kind == "TYPE":
        return f"DROP TYPE IF EXISTS {name}"
    # Every overload, so that a changed signature leaves no stale twin. Trigger functions are
    # replaced in place instead: their triggers depend on them.
    return f"""DO $$ DECLARE f regprocedure; BEGIN
        FOR f IN SELECT p.oid FROM pg_proc p WHERE p.proname = '{name}' AND p.pronamespace = current_schema()::regnamespace
                   AND p.prorettype <> 'trigger'::regtype LOOP
            EXECUTE 'DROP FUNCTION ' || f;
        END LOOP; END $$"""


def apply_one(execute: Callable[[str], object], name: str) -> None:
    """Create (or replace) the object of `name`.sql as the file defines it now."""
    kind, obj = object_of(name)
    execute(_drop(obj, kind))
    run_script(execute, source(name))


def apply(execute: Callable[[str], object], files: Mapping[str, str]) -> list[str]:
    """Apply each named file whose content still has the hash the revision names; returns those applied."""
    done = []
    for name, sha in files.items():
        if digest(name) == sha:
            apply_one(execute, name)
            done.append(name)
    return done


if __name__ == "__main__":  # `python -m tokens_forge.db.sqlfiles`: the current hashes, for a new revision
    for n in names():
        print(f'    "{n}": "{digest(n)}",')
