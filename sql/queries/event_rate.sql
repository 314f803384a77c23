-- Events received per minute, for the dashboard's overview (controllers/event_rate.py).

-- name: event-rate
-- The caller's organization and environment, :minutes minute buckets from :since (on a
-- minute), oldest first, zero-filled. :lowest_id is the smallest event id minted an hour
-- before :since: with the primary key (org_id, environment, id, created_at) it turns the
-- count into one index range (about the window's events, not the day's), and an event's
-- id is minted just before its insert, so no event of the window is below it (0018 assumes
-- the same hour of clock agreement). No row: not authorized.
SELECT c.org_id AS caller_org_id, c.credential_id AS caller_credential_id,
       b.bucket_start, b.events
FROM authorized_caller(:credential_kind, :lookup_id, :secret_hash, :environment, :scope) c
LEFT JOIN LATERAL (
    SELECT :since::timestamptz + i * interval '1 minute' AS bucket_start,
           coalesce(t.events, 0) AS events
    FROM generate_series(0, :minutes::integer - 1) AS i
    LEFT JOIN (
        SELECT floor(extract(epoch FROM e.created_at - :since::timestamptz) / 60)::integer
                   AS i,
               count(*) AS events
        FROM events e
        WHERE e.org_id = c.org_id AND e.environment = c.environment
          AND e.id >= :lowest_id
          AND e.created_at >= :since::timestamptz
          AND e.created_at < :since::timestamptz + :minutes::integer * interval '1 minute'
        GROUP BY 1
    ) t USING (i)
    ORDER BY i
) b ON true;
