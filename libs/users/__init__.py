"""Web console users: accounts (console_users), sessions (console_sessions), login attempts
(console_login_attempts), argon2id passwords and the roles."""
