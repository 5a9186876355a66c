-- The audit trail (ADM-7): append-only, each entry chained to the one before with HMAC-SM3
-- (see carehub/storage/audit.py). Portable SQL only (PostgreSQL, openGauss, KingbaseES).
-- Production: GRANT only INSERT and SELECT on audit_log to the application's role.

CREATE TABLE audit_log (
    id           bigint        PRIMARY KEY,   -- assigned under the audit_head lock: 1, 2, 3 ... no gaps
    at           timestamptz   NOT NULL,
    actor_id     varchar(64),                 -- NULL for the system or an anonymous caller
    actor_roles  varchar(200)  NOT NULL,      -- comma-separated, sorted
    action       varchar(100)  NOT NULL,      -- e.g. auth.login, record.read, role.grant
    target       varchar(300)  NOT NULL,      -- e.g. patient/P1/records
    outcome      varchar(10)   NOT NULL,      -- ok, denied, error
    source_ip    varchar(64),
    detail       text          NOT NULL,      -- canonical JSON object
    prev_hash    char(64)      NOT NULL,
    hash         char(64)      NOT NULL,
    CONSTRAINT audit_log_outcome CHECK (outcome IN ('ok', 'denied', 'error'))
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_target ON audit_log (target, id);

-- One row: the end of the chain (appends lock it, so the chain stays linear) and the anchor,
-- the last entry removed by a retention purge, which the first remaining entry links to.
CREATE TABLE audit_head (
    id           integer       PRIMARY KEY,
    last_id      bigint        NOT NULL,
    last_hash    char(64)      NOT NULL,
    anchor_id    bigint        NOT NULL,
    anchor_hash  char(64)      NOT NULL,
    anchor_at    timestamptz,
    CONSTRAINT audit_head_single CHECK (id = 1)
);
INSERT INTO audit_head (id, last_id, last_hash, anchor_id, anchor_hash, anchor_at) VALUES (
    1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
    0, '0000000000000000000000000000000000000000000000000000000000000000', NULL
);
