-- Password sign-in throttled per account AND source address (issue 16): a stranger's wrong passwords
-- lock only their own address out of that account, for a time that doubles with each lock.
-- accounts.failed_logins / locked_until stay: they count the second factor's (TOTP) failures, which
-- only someone holding the password can cause, and lock the account itself.

CREATE TABLE login_failures (
    account_id      varchar(64)  NOT NULL REFERENCES accounts (id),
    source          varchar(64)  NOT NULL,
    failures        integer      NOT NULL DEFAULT 0,
    locks           integer      NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    last_failed_at  timestamptz  NOT NULL,
    PRIMARY KEY (account_id, source)
);
CREATE INDEX login_failures_recent ON login_failures (account_id, last_failed_at);
