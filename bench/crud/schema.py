"""The CRUD design's tables and statements. A request is one round trip: the CTE finds the
user by the hash of the key, debits the account only if the balance covers the cost, inserts
the job and the ledger row, and answers which of those happened."""

from __future__ import annotations

DDL = """
CREATE TABLE IF NOT EXISTS users (
    id           uuid PRIMARY KEY,
    email        text NOT NULL UNIQUE,
    api_key_hash text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS accounts (
    user_id    uuid PRIMARY KEY REFERENCES users (id),
    balance    integer NOT NULL CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS jobs (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    type         text NOT NULL,
    status       text NOT NULL,
    cost         integer NOT NULL,
    input        jsonb NOT NULL,
    output       jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_id, created_at DESC);
CREATE TABLE IF NOT EXISTS credit_transactions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id),
    job_id     uuid,
    amount     integer NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credit_transactions_by_user ON credit_transactions (user_id, id DESC);
"""

# $1 key hash, $2 cost, $3 job id, $4 type, $5 input (jsonb text).
# No row: unknown key (401). A row with a null balance: the balance was short (402).
CREATE_JOB = """
WITH u AS (
    SELECT id FROM users WHERE api_key_hash = $1
), debit AS (
    UPDATE accounts a SET balance = a.balance - $2, updated_at = now()
    FROM u WHERE a.user_id = u.id AND a.balance >= $2
    RETURNING a.user_id, a.balance
), job AS (
    INSERT INTO jobs (id, user_id, type, status, cost, input)
    SELECT $3, user_id, $4, 'queued', $2, $5::jsonb FROM debit
), tx AS (
    INSERT INTO credit_transactions (user_id, job_id, amount, reason)
    SELECT user_id, $3, -$2, 'job' FROM debit
)
SELECT u.id AS user_id, debit.balance FROM u LEFT JOIN debit ON true
"""

# %s output (jsonb text), %s job id.
COMPLETE_JOB = """
UPDATE jobs SET status = 'completed', output = %s::jsonb, completed_at = now(), updated_at = now()
WHERE id = %s AND status = 'queued'
"""

# %s error, %s job id: the job fails and its cost goes back, in one statement.
FAIL_AND_REFUND = """
WITH j AS (
    UPDATE jobs SET status = 'failed', error = %s, updated_at = now()
    WHERE id = %s AND status = 'queued'
    RETURNING id, user_id, cost
), a AS (
    UPDATE accounts SET balance = balance + j.cost, updated_at = now()
    FROM j WHERE accounts.user_id = j.user_id
)
INSERT INTO credit_transactions (user_id, job_id, amount, reason)
SELECT user_id, id, cost, 'refund' FROM j
"""

# $1 user ids, $2 emails, $3 key hashes, $4 credits: the bench's users, funded, in one statement.
CREATE_USERS = """
WITH u AS (
    INSERT INTO users (id, email, api_key_hash)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
    RETURNING id
), a AS (
    INSERT INTO accounts (user_id, balance) SELECT id, $4 FROM u
)
INSERT INTO credit_transactions (user_id, amount, reason) SELECT id, $4, 'grant' FROM u
"""
