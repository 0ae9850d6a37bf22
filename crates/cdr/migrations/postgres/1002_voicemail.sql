-- Voicemail messages: one row per message a caller left (the WAV is a file; `path` names
-- it). Keyed by the call that left it. Times are Unix milliseconds; `deleted_at` hides a
-- message from lists (the file is removed when it is marked deleted).
CREATE TABLE voicemail (
    call_id      TEXT PRIMARY KEY NOT NULL,
    mailbox      TEXT NOT NULL,
    queue        TEXT,
    caller       TEXT NOT NULL,
    caller_name  TEXT,
    recorded_at  BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    path         TEXT NOT NULL,
    ended_by     TEXT NOT NULL,
    listened_at  BIGINT,
    deleted_at   BIGINT
);
CREATE INDEX voicemail_mailbox_recorded ON voicemail (mailbox, recorded_at);
