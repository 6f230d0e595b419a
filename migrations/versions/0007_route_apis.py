"""Routes say which upstream APIs they speak (`apis`) and which field carries an output cap the
gateway sets itself (`output_cap_param`); receipts say which client endpoint they answer
(`endpoint`, written with the receipt: tf_open_item and tf_write_batch take it). SPEC §3.

`apis` is stored in one canonical order (chat_completions, responses, embeddings), so the CHECK
can list every allowed set: non-empty, no duplicates, nothing unknown. The API layer sorts what
it is sent. All three columns have constant defaults: adding them rewrites no table.

Revision ID: 0007
Revises: 0008
"""
from alembic import op

from tokens_forge.db import sqlfiles
from tokens_forge.db.sql import run_script

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None

API_SETS = [
    ["chat_completions"], ["responses"], ["embeddings"],
    ["chat_completions", "responses"], ["chat_completions", "embeddings"], ["responses", "embeddings"],
    ["chat_completions", "responses", "embeddings"],
]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]::TEXT[]"


UPGRADE = f"""
ALTER TABLE routes
    ADD COLUMN apis TEXT[] NOT NULL DEFAULT ARRAY['chat_completions']::TEXT[]
        CONSTRAINT routes_apis_set CHECK (apis IN ({", ".join(_array(s) for s in API_SETS)})),
    ADD COLUMN output_cap_param TEXT NOT NULL DEFAULT 'max_completion_tokens'
        CONSTRAINT routes_output_cap_param CHECK (output_cap_param IN ('max_completion_tokens', 'max_tokens'));

ALTER TABLE receipts
    ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat_completions'
        CONSTRAINT receipts_endpoint CHECK (endpoint IN ('chat_completions', 'responses', 'embeddings'));
"""


FILES = {
    "tf_open_item": "ff49559632677abf",
    "tf_write_batch": "8dc702500c426e04",
}


def upgrade() -> None:
    run_script(op.execute, UPGRADE)
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0007 changes the ledger's functions (they write the receipt's endpoint); "
                              "restore from a backup instead")
