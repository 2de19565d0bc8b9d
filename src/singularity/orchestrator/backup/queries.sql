-- The SQL of backups: run as the administrator on a server's maintenance database.

-- name: server_version --
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version

-- name: databases_named_like --
-- Candidate instance databases (`<base>_<N>`); the caller checks the suffix is a number.
SELECT datname AS name FROM pg_database
WHERE starts_with(datname, %(prefix)s) AND NOT datistemplate
ORDER BY datname

-- name: database_exists --
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(name)s) AS present

-- name: database_acl --
-- Who may do what on a database (NULL `grantee`: PUBLIC); no rows and `is_default` when the
-- database has the built-in privileges.
SELECT d.datacl IS NULL AS is_default, r.rolname AS grantee, a.privilege_type AS privilege
FROM pg_database d
LEFT JOIN LATERAL aclexplode(d.datacl) a ON true
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE d.datname = %(name)s
ORDER BY r.rolname NULLS FIRST, a.privilege_type

-- name: existing_roles --
SELECT rolname AS name FROM pg_roles WHERE rolname = ANY(%(names)s::text[])

-- name: create_database_owned --
-- template0: the dump brings every object itself, nothing may come from template1.
CREATE DATABASE {database} OWNER {owner} TEMPLATE template0

-- name: create_database --
CREATE DATABASE {database} TEMPLATE template0

-- name: drop_database --
-- FORCE terminates the sessions still connected to it (PostgreSQL 13+).
DROP DATABASE IF EXISTS {database} WITH (FORCE)

-- name: rename_database --
ALTER DATABASE {database} RENAME TO {new_name}

-- name: revoke_database_public --
REVOKE ALL ON DATABASE {database} FROM PUBLIC

-- name: grant_database_connect --
GRANT CONNECT ON DATABASE {database} TO {grantee}

-- name: grant_database_create --
GRANT CREATE ON DATABASE {database} TO {grantee}

-- name: grant_database_temporary --
GRANT TEMPORARY ON DATABASE {database} TO {grantee}
