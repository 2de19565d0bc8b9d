-- The SQL of the bus. Values are parameters; {identifiers} are quoted by Queries.compose().
-- The request key of a message is its request_id, else the design's id field.

-- name: read --
-- Take up to qty visible messages for vt seconds. `seen` flags a message whose request was
-- already handled (its key is in the archive), so its handler need not run again. The lateral
-- LIMIT 1 makes this one index probe per message; as EXISTS, the planner would hash-scan the
-- whole archive. The read commits without waiting for its WAL flush (synchronous_commit off
-- for this statement's own transaction): were it lost in a crash, the message would only
-- become visible again sooner. Archives and sends stay durable.
-- A body longer than max_bytes (as JSON text) is not sent to the client at all (body and
-- key are NULL, `size` says how long it is): the consumer dead-letters it unread. The text
-- is made once per message (OFFSET 0 keeps the planner from inlining it twice).
SELECT r.msg_id, r.read_ct, r.enqueued_at,
       CASE WHEN t.fits THEN t.body END AS body, t.bytes AS size,
       k.key,
       s.seen IS NOT NULL AS seen
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed,
     pgmq.read(%(queue)s, %(vt)s, %(qty)s) r
CROSS JOIN LATERAL (
    SELECT b.body, octet_length(b.body) AS bytes, octet_length(b.body) <= %(max_bytes)s AS fits
    FROM (SELECT r.message::text AS body OFFSET 0) b
) t
CROSS JOIN LATERAL (
    SELECT CASE WHEN t.fits THEN COALESCE(r.message->>'request_id', r.message->>'id') END AS key
) k
LEFT JOIN LATERAL (
    SELECT true AS seen FROM pgmq.{archive} a
    WHERE COALESCE(a.message->>'request_id', a.message->>'id') = k.key
    LIMIT 1
) s ON true

-- name: read_bare --
-- Take the next visible message without its body, for one that the server cannot even turn
-- into text (its text would pass PostgreSQL's 1 GB limit: jsonb escapes a control character
-- in six bytes): it is dead-lettered by msg_id, never read.
SELECT r.msg_id, r.read_ct, r.enqueued_at
FROM pgmq.read(%(queue)s, %(vt)s, 1) r

-- name: message_bytes --
-- Whether the server can turn one message into text (an error when it cannot).
SELECT octet_length(message::text) FROM pgmq.{queue_table} WHERE msg_id = %(msg_id)s

-- name: message_head --
-- The fields of a message too large to read that an answer to its asker needs (request_id,
-- id, reply_to), each only when it is a short string or a number; NULL when none is.
SELECT jsonb_object_agg(f.name, f.value)::text
FROM pgmq.{queue_table} q
CROSS JOIN LATERAL (
    VALUES ('request_id', q.message->'request_id'), ('id', q.message->'id'),
           ('reply_to', q.message->'reply_to')
) AS f(name, value)
WHERE q.msg_id = %(msg_id)s
  AND jsonb_typeof(f.value) IN ('string', 'number')
  AND octet_length(f.value::text) <= %(max_field_bytes)s

-- name: archive --
-- Move handled messages to the archive; returns the ids this transaction really moved.
SELECT archived FROM pgmq.archive(%(queue)s, %(ids)s::bigint[]) AS archived

-- name: lock_keys --
-- Serialize the commits of messages that carry the same request key (held until commit).
SELECT pg_advisory_xact_lock(hashtextextended(%(queue)s || ':' || key, 0))
FROM unnest(%(keys)s::text[]) AS key
ORDER BY key

-- name: archived_keys --
-- Request keys already handled by another message (run after lock_keys, in a new snapshot).
SELECT DISTINCT COALESCE(message->>'request_id', message->>'id') AS key
FROM pgmq.{archive}
WHERE COALESCE(message->>'request_id', message->>'id') = ANY(%(keys)s::text[])
  AND msg_id <> ALL(%(ids)s::bigint[])

-- name: send --
SELECT msg_id FROM pgmq.send(%(queue)s, %(message)s::jsonb, %(delay)s::integer) AS msg_id

-- name: send_batch --
-- The batch arrives as one JSON array (one parameter, no per-element array escaping) and is
-- unnested in order.
SELECT msg_id
FROM pgmq.send_batch(
    %(queue)s,
    ARRAY(
        SELECT m.value
        FROM jsonb_array_elements(%(messages)s::jsonb) WITH ORDINALITY AS m(value, n)
        ORDER BY m.n
    ),
    %(delay)s::integer
) AS msg_id

-- name: claim_send --
-- Take a send-once key (send_once); no row when it was taken before. The key and the send
-- commit in one transaction.
INSERT INTO bus.sent_once (key) VALUES (%(key)s) ON CONFLICT (key) DO NOTHING RETURNING true

-- name: set_vt --
-- Make messages visible again after vt seconds (0: now); returns the ids still in the queue.
SELECT msg_id
FROM pgmq.set_vt(%(queue)s, %(ids)s::bigint[], clock_timestamp() + make_interval(secs => %(vt)s))

-- name: delete --
SELECT deleted FROM pgmq.delete(%(queue)s, %(ids)s::bigint[]) AS deleted

-- name: dead_letter --
-- Move one message to its dead-letter queue: `letter` (the envelope: queue, reason, ...)
-- gets the original straight from the queue table, so that a body too large or too deeply
-- nested for the consumer to read is still kept whole, never parsed by it. No row when the
-- message is no longer in its queue.
WITH gone AS (
    DELETE FROM pgmq.{queue_table} WHERE msg_id = %(msg_id)s RETURNING message
)
SELECT pgmq.send(
    %(dead_letter_queue)s, %(letter)s::jsonb || jsonb_build_object('original', gone.message), 0
)
FROM gone

-- name: dead_letter_unkept --
-- The same, for the rare message PostgreSQL cannot wrap in an envelope (nested to its stack
-- limit, or near jsonb's 255 MB): the letter says why, without the original.
WITH gone AS (
    DELETE FROM pgmq.{queue_table} WHERE msg_id = %(msg_id)s RETURNING msg_id
)
SELECT pgmq.send(%(dead_letter_queue)s, %(letter)s::jsonb, 0) FROM gone

-- name: peek --
-- Look at messages without taking them.
SELECT msg_id, read_ct, enqueued_at, vt, message::text AS body
FROM pgmq.{queue_table}
ORDER BY msg_id
LIMIT %(n)s

-- name: peek_letters --
-- Dead letters for people to read, without taking them: the envelope without its original,
-- and the original's text only when it is small (fifty letters of 100 MB each would bring
-- 5 GB to the client). Sizes are of the binary jsonb, which `->` and `-` build afresh (a
-- stored value may be compressed): a value whose text could pass PostgreSQL's 1 GB limit
-- is never turned into text. A message that is not an envelope has envelope NULL.
SELECT d.msg_id,
       CASE WHEN e.bytes <= %(max_bytes)s THEN e.value::text END AS envelope,
       CASE WHEN o.bytes <= %(max_bytes)s THEN o.value::text END AS original,
       coalesce(o.bytes, e.bytes) AS bytes
FROM pgmq.{queue_table} d
CROSS JOIN LATERAL (
    SELECT v.value, pg_column_size(v.value) AS bytes
    FROM (
        SELECT CASE WHEN jsonb_typeof(d.message) = 'object' THEN d.message - 'original'
                    ELSE jsonb_build_array(d.message)->0 END AS value
        OFFSET 0
    ) v
) e
CROSS JOIN LATERAL (
    SELECT v.value, pg_column_size(v.value) AS bytes
    FROM (SELECT d.message->'original' AS value OFFSET 0) v
) o
ORDER BY d.msg_id
LIMIT %(n)s

-- name: take_all --
-- Lock a batch of dead letters (for a redrive); skips those a consumer holds. `original`
-- says whether the letter holds one to send back (the body itself stays in the server).
SELECT msg_id, coalesce(jsonb_typeof(message->'original'), 'null') <> 'null' AS original
FROM pgmq.{queue_table}
ORDER BY msg_id
LIMIT %(n)s
FOR UPDATE SKIP LOCKED

-- name: resend_originals --
-- Send the originals of these dead letters back to their queue, in order, as new messages;
-- in the server, so that an original too big or deep for a client is redriven all the same.
SELECT msg_id
FROM pgmq.send_batch(
    %(queue)s,
    ARRAY(
        SELECT d.message->'original' FROM pgmq.{queue_table} d
        WHERE d.msg_id = ANY(%(ids)s::bigint[])
        ORDER BY d.msg_id
    ),
    0
) AS msg_id

-- name: list_queues --
SELECT queue_name, created_at FROM pgmq.meta ORDER BY queue_name

-- name: queue_exists --
SELECT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = %(queue)s) AS exists

-- name: drop_queue --
SELECT pgmq.drop_queue(%(queue)s)

-- name: pop --
-- Take the oldest message for good (a private reply queue keeps no archive).
SELECT message FROM pgmq.pop(%(queue)s)

-- name: metrics --
SELECT m.queue_name, m.queue_length, m.queue_visible_length, m.oldest_msg_age_sec,
       m.newest_msg_age_sec, m.total_messages,
       (SELECT count(*) FROM pgmq.{archive}) AS archived
FROM pgmq.metrics(%(queue)s) m

-- name: prune_archive --
-- Delete one batch of archive rows older than the retention period; returns how many.
WITH doomed AS (
    SELECT msg_id FROM pgmq.{archive}
    WHERE archived_at < now() - make_interval(days => %(days)s)
    ORDER BY archived_at
    LIMIT %(batch)s
)
DELETE FROM pgmq.{archive} a USING doomed d WHERE a.msg_id = d.msg_id

-- name: pgmq_state --
SELECT to_regclass('pgmq.meta') IS NOT NULL AS installed,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq') AS available,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq') AS extension

-- name: create_extension --
CREATE EXTENSION IF NOT EXISTS pgmq

-- name: create_notify_function --
-- A statement-level wake-up: one NOTIFY per sending statement, on pgmq's own channel name
-- (pgmq.q_<queue>.INSERT), without pgmq's per-row throttle table that serializes senders.
CREATE SCHEMA IF NOT EXISTS bus;
CREATE OR REPLACE FUNCTION bus.notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
    RETURN NULL;
END
$$

-- name: create_queue --
SELECT pgmq.create(%(queue)s)

-- name: create_notify_trigger --
CREATE OR REPLACE TRIGGER bus_notify_insert
AFTER INSERT ON pgmq.{queue_table}
FOR EACH STATEMENT EXECUTE FUNCTION bus.notify_insert()

-- name: create_key_index --
CREATE INDEX IF NOT EXISTS {index} ON pgmq.{archive}
    ((COALESCE(message->>'request_id', message->>'id')))

-- name: revoke_bus --
REVOKE ALL ON ALL TABLES IN SCHEMA pgmq FROM {role};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgmq FROM {role};
REVOKE ALL ON SCHEMA pgmq FROM {role}

-- name: grant_usage --
GRANT USAGE ON SCHEMA pgmq TO {role}

-- name: grant_publish --
-- Send: insert, and read back the new msg_id (pgmq.send returns it); nothing else.
GRANT INSERT, SELECT (msg_id) ON pgmq.{queue_table} TO {role}

-- name: grant_consume --
-- Read (an UPDATE of vt and read_ct), archive (delete, then insert into the archive),
-- and look up handled request keys in the archive.
GRANT SELECT, UPDATE, DELETE ON pgmq.{queue_table} TO {role};
GRANT SELECT, INSERT ON pgmq.{archive} TO {role}

-- name: grant_observe --
-- Queue depth and age (pgmq.metrics reads the queue, its sequence and pgmq.meta).
GRANT SELECT ON pgmq.{queue_table}, pgmq.{sequence}, pgmq.meta TO {role}

-- name: grant_prune --
GRANT SELECT, DELETE ON pgmq.{archive} TO {role}

-- name: grant_read_archive --
GRANT SELECT ON pgmq.{archive} TO {role}

-- name: can_send --
-- Whether this role may send to a queue: NULL when there is no such queue, else whether
-- INSERT on its table is granted (to_regclass needs no privilege on the table).
SELECT CASE
    WHEN to_regclass(format('pgmq.%%I', 'q_' || %(queue)s)) IS NULL THEN NULL
    ELSE has_table_privilege(format('pgmq.%%I', 'q_' || %(queue)s), 'INSERT')
END AS allowed

-- name: create_depths_function --
-- Depth and oldest age of every queue, for the services' dashboards and status: counts only,
-- never a message. It runs with its creator's rights (the administrator who installs the bus),
-- so a service can see every queue's depth without any grant on the queues themselves.
CREATE SCHEMA IF NOT EXISTS bus;
CREATE OR REPLACE FUNCTION bus.queue_depths()
RETURNS TABLE (queue_name text, queue_length bigint, oldest_msg_age_sec integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.queue_name::text, m.queue_length, m.oldest_msg_age_sec
    FROM pgmq.metrics_all() AS m
    ORDER BY m.queue_name
$$;
REVOKE ALL ON FUNCTION bus.queue_depths() FROM PUBLIC

-- name: create_sent_once_table --
-- The keys of messages sent with send_once: whoever cannot tell whether its send went
-- through (a lost connection, a crash before it noted the send) sends again without sending
-- twice. Keys are kept for the retention period.
CREATE SCHEMA IF NOT EXISTS bus;
CREATE TABLE IF NOT EXISTS bus.sent_once (
    key text PRIMARY KEY,
    sent_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sent_once_sent_at_idx ON bus.sent_once (sent_at)

-- name: revoke_sent_once --
REVOKE ALL ON bus.sent_once FROM {role}

-- name: grant_send_once --
GRANT SELECT, INSERT ON bus.sent_once TO {role}

-- name: grant_prune_sent_once --
GRANT SELECT, DELETE ON bus.sent_once TO {role}

-- name: prune_sent_once --
-- Delete one batch of send-once keys older than the retention period; returns how many.
WITH doomed AS (
    SELECT key FROM bus.sent_once
    WHERE sent_at < now() - make_interval(days => %(days)s)
    ORDER BY sent_at
    LIMIT %(batch)s
)
DELETE FROM bus.sent_once s USING doomed d WHERE s.key = d.key

-- name: grant_depths --
GRANT USAGE ON SCHEMA bus TO {role};
GRANT EXECUTE ON FUNCTION bus.queue_depths() TO {role}

-- name: queue_depths --
SELECT queue_name, queue_length, oldest_msg_age_sec FROM bus.queue_depths()

-- name: absent_queues --
-- Which of these queues have no table (to_regclass needs no privilege: any role may ask).
SELECT name FROM unnest(%(names)s::text[]) AS name
WHERE to_regclass(format('pgmq.%%I', 'q_' || name)) IS NULL
ORDER BY name

-- ------------------------------------------------------------------------------ workspaces
-- Snapshots of repositories that travel with experiment requests: blobs by content, and
-- manifests by the hash of their canonical JSON. See shared_queue/manifest.py.

-- name: create_workspace_tables --
-- A blob is one chunk of a file (at most 1 MiB), named by the sha256 of its data; the
-- server itself checks the name as the blob is stored (a trigger: a CHECK would hash the data
-- again at every mark of stored_at), so no publisher can file data under another's name.
-- stored_at is when a publisher last stored the blob or counted on it being there: a blob no
-- snapshot references is pruned only once that is a day old, so a snapshot being published
-- never loses the blobs it was told are present.
-- A snapshot's manifest is kept as the exact canonical bytes its id is the sha256 of, and the
-- server checks that too, so a snapshot can neither be filed under another's id nor replaced.
-- Its digests are the distinct blobs its manifest names, filled in by the server, indexed for
-- the prune's "is this blob still referenced".
CREATE SCHEMA IF NOT EXISTS bus;
CREATE TABLE IF NOT EXISTS bus.workspace_blobs (
    digest text PRIMARY KEY,
    data bytea NOT NULL CHECK (octet_length(data) <= 1048576),
    size integer NOT NULL CHECK (size = octet_length(data)),
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspace_blobs_stored_at_idx ON bus.workspace_blobs (stored_at);
CREATE OR REPLACE FUNCTION bus.check_blob_digest() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.digest IS DISTINCT FROM encode(sha256(NEW.data), 'hex') THEN
        RAISE EXCEPTION 'blob % does not hold the data its name is the sha256 of', NEW.digest
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER workspace_blobs_digest
BEFORE INSERT OR UPDATE OF digest, data ON bus.workspace_blobs
FOR EACH ROW EXECUTE FUNCTION bus.check_blob_digest();
CREATE TABLE IF NOT EXISTS bus.workspace_snapshots (
    id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    manifest bytea NOT NULL,
    digests text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION bus.check_snapshot_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM encode(sha256(NEW.manifest), 'hex') THEN
        RAISE EXCEPTION 'snapshot % is not the sha256 of its manifest', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER workspace_snapshots_id
BEFORE INSERT OR UPDATE OF id, manifest ON bus.workspace_snapshots
FOR EACH ROW EXECUTE FUNCTION bus.check_snapshot_id();
CREATE INDEX IF NOT EXISTS workspace_snapshots_last_used_idx
    ON bus.workspace_snapshots (last_used_at);
CREATE INDEX IF NOT EXISTS workspace_snapshots_digests_idx
    ON bus.workspace_snapshots USING gin (digests)

-- name: revoke_workspaces --
REVOKE ALL ON bus.workspace_blobs, bus.workspace_snapshots FROM {role}

-- name: grant_workspace_publish --
-- Publishers of experiment requests store blobs and manifests, and mark them used.
GRANT SELECT, INSERT, UPDATE (stored_at) ON bus.workspace_blobs TO {role};
GRANT SELECT, INSERT, UPDATE (last_used_at) ON bus.workspace_snapshots TO {role}

-- name: grant_workspace_read --
-- The consumer of experiment requests reads them.
GRANT SELECT ON bus.workspace_blobs, bus.workspace_snapshots TO {role}

-- name: grant_workspace_prune --
GRANT SELECT, DELETE ON bus.workspace_blobs, bus.workspace_snapshots TO {role}

-- name: present_blobs --
-- Which of these blobs the bus holds; each is marked stored now (when its mark is older than
-- an hour: a publish counts on it for less than the day the prune waits).
WITH asked AS (SELECT DISTINCT unnest(%(digests)s::text[]) AS digest),
touched AS (
    UPDATE bus.workspace_blobs b SET stored_at = now()
    FROM asked
    WHERE b.digest = asked.digest AND b.stored_at < now() - interval '1 hour'
    RETURNING b.digest
)
SELECT digest FROM touched
UNION
SELECT b.digest FROM bus.workspace_blobs b JOIN asked USING (digest)
WHERE b.stored_at >= now() - interval '1 hour'

-- name: store_blobs --
-- Store blobs (the server checks each name against its data); one already there (stored
-- meanwhile by another publisher) is kept. The row count is how many were new.
INSERT INTO bus.workspace_blobs (digest, data, size)
SELECT d.digest, d.data, octet_length(d.data)
FROM unnest(%(digests)s::text[], %(data)s::bytea[]) AS d(digest, data)
ON CONFLICT (digest) DO NOTHING

-- name: store_snapshot --
-- Store a manifest (its canonical bytes) under its id, or mark a stored one used. Its blob list
-- is the server's own reading of the manifest.
INSERT INTO bus.workspace_snapshots (id, manifest, digests)
SELECT %(id)s, m.raw, ARRAY(
    SELECT DISTINCT c
    FROM jsonb_array_elements(m.doc->'entries') AS e,
         jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(e->'chunks') = 'array' THEN e->'chunks' ELSE '[]' END
         ) AS c
)
FROM (
    SELECT %(manifest)s::bytea AS raw, convert_from(%(manifest)s::bytea, 'UTF8')::jsonb AS doc
) AS m
ON CONFLICT (id) DO UPDATE SET last_used_at = now()
RETURNING (xmax = 0) AS created

-- name: snapshot_manifest --
-- A snapshot's manifest, only when it is at most max_bytes long (`size` says how long it is);
-- no row for an unknown id.
SELECT CASE WHEN octet_length(manifest) <= %(max_bytes)s THEN manifest END AS manifest,
       octet_length(manifest) AS size
FROM bus.workspace_snapshots
WHERE id = %(id)s

-- name: fetch_blobs --
-- These blobs' data; one longer than a chunk comes without it.
SELECT digest, CASE WHEN octet_length(data) <= %(max_bytes)s THEN data END AS data
FROM bus.workspace_blobs
WHERE digest = ANY(%(digests)s::text[])

-- name: prune_snapshots --
-- Delete one batch of snapshots unused for the retention period; returns how many.
WITH doomed AS (
    SELECT id FROM bus.workspace_snapshots
    WHERE last_used_at < now() - make_interval(days => %(days)s)
    ORDER BY last_used_at
    LIMIT %(batch)s
)
DELETE FROM bus.workspace_snapshots s USING doomed d WHERE s.id = d.id

-- name: prune_blobs --
-- Delete one batch of blobs no snapshot names, stored over a day ago; returns how many.
-- A publish marks the blobs it counts on (present_blobs) and, under that mark's row lock,
-- a concurrent delete sees the new stored_at and leaves them.
WITH doomed AS (
    SELECT b.digest FROM bus.workspace_blobs b
    WHERE b.stored_at < now() - interval '1 day'
      AND NOT EXISTS (
          SELECT 1 FROM bus.workspace_snapshots s WHERE s.digests @> ARRAY[b.digest]
      )
    ORDER BY b.stored_at
    LIMIT %(batch)s
)
DELETE FROM bus.workspace_blobs b USING doomed d
WHERE b.digest = d.digest AND b.stored_at < now() - interval '1 day'
