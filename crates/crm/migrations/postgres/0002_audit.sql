-- Who read or changed which customer record, when, and whether it was allowed.
CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    customer_id  BIGINT,
    allowed      BOOLEAN NOT NULL,
    detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
