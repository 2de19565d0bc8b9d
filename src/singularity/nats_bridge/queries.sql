-- The SQL of the NATS bridge, against the shared_queue database as the singularity role.

-- name: instance_lock --
-- Held for the bridge's lifetime (session-level): one bridge per instance, since two sharing
-- reply queues would take each other's answers.
SELECT pg_try_advisory_lock(hashtext('singularity.nats_bridge'), %(instance)s)
