-- The SQL of the postgres package: provisioning, access and status.

-- name: bootstrap_lock --
-- One bootstrap at a time per server (session-level; released when the connection closes).
SELECT pg_advisory_lock(hashtextextended('singularity.bootstrap', 0))

-- name: admin_privileges --
SELECT current_user AS name, rolsuper AS superuser, rolcreatedb AS createdb,
       rolcreaterole AS createrole, current_setting('server_version_num')::int AS version
FROM pg_roles WHERE rolname = current_user

-- name: existing_roles --
SELECT rolname AS name FROM pg_roles WHERE rolname = ANY(%(names)s::text[])

-- name: create_role --
CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION

-- name: set_role_password --
ALTER ROLE {role} PASSWORD {password}

-- name: is_member --
-- On PostgreSQL 16+, a CREATEROLE user holds only ADMIN on roles it created: ask for SET.
SELECT pg_has_role(current_user, %(role)s, %(privilege)s) AS member

-- name: grant_membership --
-- A non-superuser administrator must be able to SET ROLE to own databases and run migrations.
GRANT {role} TO CURRENT_USER

-- name: existing_databases --
SELECT datname AS name FROM pg_database WHERE datname = ANY(%(names)s::text[])

-- name: create_database_owned --
CREATE DATABASE {database} OWNER {owner}

-- name: create_database --
CREATE DATABASE {database}

-- name: revoke_database --
REVOKE ALL ON DATABASE {database} FROM PUBLIC

-- name: revoke_connect_public --
REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC

-- name: revoke_database_from --
REVOKE ALL ON DATABASE {database} FROM {role}

-- name: grant_connect --
GRANT CONNECT ON DATABASE {database} TO {role}

-- name: lock_public_schema --
-- PostgreSQL 14 lets every role create objects in `public`; nobody but the owner may here.
REVOKE CREATE ON SCHEMA public FROM PUBLIC

-- name: give_public_schema --
GRANT USAGE, CREATE ON SCHEMA public TO {role}

-- name: vector_state --
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') AS installed

-- name: create_vector --
CREATE EXTENSION IF NOT EXISTS vector

-- name: set_role --
SET ROLE {role}

-- name: database_status --
SELECT pg_database_size(current_database()) AS size,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections

-- name: table_sizes --
SELECT n.nspname AS schema, c.relname AS name, pg_total_relation_size(c.oid) AS size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname

-- name: migration_version --
SELECT version_num FROM alembic_version
