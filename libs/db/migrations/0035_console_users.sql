-- Web console users, their sessions and their login attempts (libs/users).
-- A user acts as one API key's tenant (api_key_id) or, with `operator`, as the operator (the
-- bootstrap key): never both, never neither.
CREATE TABLE media_pipeline.console_users (
    id            uuid PRIMARY KEY,
    -- As given (trimmed); `email_norm` (lower case) is what logins look up, unique.
    email         text NOT NULL,
    email_norm    text NOT NULL UNIQUE,
    -- argon2id, PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'supervisor', 'admin')),
    api_key_id    uuid REFERENCES media_pipeline.api_keys (id),
    operator      boolean NOT NULL DEFAULT false,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((operator AND api_key_id IS NULL) OR (NOT operator AND api_key_id IS NOT NULL))
);
CREATE INDEX console_users_key ON media_pipeline.console_users (api_key_id);

-- Server-side sessions: only the sha256 of the cookie's token is stored. A session ends at
-- logout (ended_at), after CONSOLE_IDLE_MINUTES without use (last_seen_at) or at expires_at
-- (CONSOLE_SESSION_HOURS after the login), whichever comes first.
CREATE TABLE media_pipeline.console_sessions (
    id           uuid PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE,
    user_id      uuid NOT NULL REFERENCES media_pipeline.console_users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    address      text NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_user ON media_pipeline.console_sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX console_sessions_expiry ON media_pipeline.console_sessions (expires_at);

-- Failed (and successful) logins, for the per-account and per-address rate limits.
CREATE TABLE media_pipeline.console_login_attempts (
    id           bigserial PRIMARY KEY,
    email_norm   text NOT NULL,
    address      text NOT NULL,
    succeeded    boolean NOT NULL,
    attempted_at timestamptz NOT NULL
);
CREATE INDEX console_login_attempts_email ON media_pipeline.console_login_attempts (email_norm, attempted_at) WHERE NOT succeeded;
CREATE INDEX console_login_attempts_address ON media_pipeline.console_login_attempts (address, attempted_at) WHERE NOT succeeded;
