"""Database URLs: users give `postgresql://…` (also `postgresql://u:pw@/db?host=/socket/dir`);
SQLAlchemy needs the asyncpg dialect, and raw asyncpg needs the plain form."""

from sqlalchemy.engine import make_url


def async_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
