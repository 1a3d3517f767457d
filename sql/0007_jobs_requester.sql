-- 0007: bulk DLQ jobs (issue 11) act on event_dlq with the requester's
-- whole scope: whether it sees entries without a tenant (admins only), and
-- its role for the audit rows the job writes.
ALTER TABLE jobs ADD COLUMN scope_unknown_tenant boolean NOT NULL
  DEFAULT false;
ALTER TABLE jobs ADD COLUMN requested_role text;
