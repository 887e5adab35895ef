"""The worker's copy task. It writes the copy with the same function genrail's pipeline runs
for a copy job (`genrail_copywriter.copy.generate_copy`, genrail's default local provider),
then completes the row in one statement; a job whose copy cannot be written fails and is
refunded in one statement.

Configuration (env): CRUD_DATABASE_DSN (postgresql://...), and celeryapp's.
"""

from __future__ import annotations

import json
import os

import psycopg

from genrail_copywriter.copy import generate_copy

from .celeryapp import COPY_TASK, app
from .schema import COMPLETE_JOB, FAIL_AND_REFUND

_conn: psycopg.Connection | None = None


def db() -> psycopg.Connection:
    """One autocommit connection per worker process, opened on first use (so after a prefork
    child is forked); psycopg prepares the statements it sees repeatedly."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["CRUD_DATABASE_DSN"], autocommit=True)
    return _conn


@app.task(name=COPY_TASK, bind=True, ignore_result=True, max_retries=10)
def copy(self, job_id: str, job_input: dict) -> None:
    try:
        output = generate_copy(job_input)
    except Exception as e:  # this input cannot give copy: the job fails and is refunded
        statement, params = FAIL_AND_REFUND, (f"{type(e).__name__}: {e}", job_id)
    else:
        statement, params = COMPLETE_JOB, (json.dumps(output), job_id)
    try:
        db().execute(statement, params)
    except psycopg.OperationalError as e:  # the database is away: the task comes back later
        raise self.retry(exc=e, countdown=1)
