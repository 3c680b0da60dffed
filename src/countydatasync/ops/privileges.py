"""What the source account may do, per database, for doctor's least-privilege check.

Each function returns (can_write, detail). "Write" means changing data or the schema: INSERT, UPDATE,
DELETE, TRUNCATE on any table, or role attributes that grant everything (superuser, sysadmin, db_owner).
A sync needs SELECT on one table; anything more is what a leaked password would be worth to an attacker.
"""

from __future__ import annotations

import sqlalchemy as sa

from countydatasync.extract.base import SourceSpec

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
PG_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
MSSQL_WRITES = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "ALTER",
    "CONTROL",
    "TAKE OWNERSHIP",
    "ALTER ANY SCHEMA",
    "CREATE TABLE",
)

PG_ROLE = sa.text(
    "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)
PG_TABLE_PRIVILEGES = sa.text(
    "SELECT p.privilege FROM unnest(CAST(:privileges AS text[])) WITH ORDINALITY AS p(privilege, n) "
    "WHERE has_table_privilege(to_regclass(:qualified), p.privilege) ORDER BY p.n"
)
PG_WRITABLE_TABLES = sa.text(
    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND c.oid <> coalesce(to_regclass(:qualified), 0) "
    "AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE') "
    "OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE')) "
    "ORDER BY 1 LIMIT 11"
)


def pg_qualified(spec: SourceSpec) -> str:
    """`"schema"."table"` with inner quotes doubled, as to_regclass expects for mixed-case names."""

    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    return f"{quote(spec.db_schema)}.{quote(spec.table)}" if spec.db_schema else quote(spec.table)


def postgresql(conn: sa.Connection, spec: SourceSpec) -> tuple[bool, str]:
    """Role attributes, privileges on the source table and any other table the role can write."""
    qualified = pg_qualified(spec)
    user, superuser, createrole, createdb, bypassrls = conn.execute(PG_ROLE).one()
    granted = list(
        conn.execute(PG_TABLE_PRIVILEGES, {"privileges": list(TABLE_PRIVILEGES), "qualified": qualified}).scalars()
    )
    others = list(conn.execute(PG_WRITABLE_TABLES, {"qualified": qualified}).scalars())
    attributes = [
        name
        for name, on in (
            ("SUPERUSER", superuser),
            ("CREATEROLE", createrole),
            ("CREATEDB", createdb),
            ("BYPASSRLS", bypassrls),
        )
        if on
    ]
    writes = [p for p in granted if p in PG_WRITES]
    detail = f"role {user} has {', '.join(granted) or 'no privileges'} on {qualified}"
    if attributes:
        detail += f"; role attributes {', '.join(attributes)}"
    if others:
        listed = ", ".join(others[:10]) + (" and more" if len(others) > 10 else "")
        detail += f"; can also write {listed}"
    can_write = bool(writes or others or superuser or createrole)
    if can_write:
        detail += "; a sync needs only SELECT: use a read-only role (GRANT SELECT ON the table only)"
    return can_write, detail


MSSQL_OBJECT_PERMISSIONS = sa.text(
    "SELECT DISTINCT permission_name FROM fn_my_permissions(:qualified, 'OBJECT') WHERE subentity_name = ''"
)
MSSQL_DATABASE_PERMISSIONS = sa.text("SELECT DISTINCT permission_name FROM fn_my_permissions(NULL, 'DATABASE')")
MSSQL_ROLES = sa.text(
    "SELECT SUSER_SNAME(), IS_SRVROLEMEMBER('sysadmin'), IS_ROLEMEMBER('db_owner'), IS_ROLEMEMBER('db_datawriter')"
)


def mssql_qualified(spec: SourceSpec) -> str:
    """`[schema].[table]` with closing brackets doubled, as fn_my_permissions expects."""

    def quote(name: str) -> str:
        return "[" + name.replace("]", "]]") + "]"

    return f"{quote(spec.db_schema)}.{quote(spec.table)}" if spec.db_schema else quote(spec.table)


def mssql(conn: sa.Connection, spec: SourceSpec) -> tuple[bool, str]:
    """Effective permissions (fn_my_permissions) on the table and the database, and fixed-role membership."""
    qualified = mssql_qualified(spec)
    login, sysadmin, db_owner, datawriter = conn.execute(MSSQL_ROLES).one()
    on_table = sorted(conn.execute(MSSQL_OBJECT_PERMISSIONS, {"qualified": qualified}).scalars())
    on_database = set(conn.execute(MSSQL_DATABASE_PERMISSIONS).scalars())
    roles = [name for name, on in (("sysadmin", sysadmin), ("db_owner", db_owner), ("db_datawriter", datawriter)) if on]
    writes = sorted({p for p in on_table if p in MSSQL_WRITES} | (on_database & set(MSSQL_WRITES)))
    detail = f"login {login} has {', '.join(on_table) or 'no permissions'} on {qualified}"
    if roles:
        detail += f"; member of {', '.join(roles)}"
    if writes:
        detail += f"; can {', '.join(writes)}"
    can_write = bool(writes or roles)
    if can_write:
        detail += "; a sync needs only SELECT: use a login with db_datareader or SELECT on the table only"
    return can_write, detail
