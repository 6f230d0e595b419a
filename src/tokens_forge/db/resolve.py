"""Which database to use: TF_DATABASE_URL, or the embedded one."""

from tokens_forge.config import Settings
from tokens_forge.db.embedded import start_embedded


def database_url(settings: Settings) -> str:
    return settings.database_url or start_embedded(settings.data_dir)
