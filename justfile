# Common tasks. `just` comes with the dev install (the rust-just wheel): .venv/bin/just

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv/bin"

# Install every workspace member and the dev tools into .venv
install:
    bash scripts/install

# Start the whole system on embedded defaults (add --demo to see a job run)
up *ARGS:
    {{venv}}/genrail up {{ARGS}}

# Run the whole test suite
test *ARGS:
    {{venv}}/python -m pytest {{ARGS}}

# Unit and handler tests only: the domain, the adapters and every handler on the in-memory log, no servers
unit:
    {{venv}}/python -m pytest libs/events/tests tests/unit tests/handlers -q

# genrail against the plain CRUD design it replaces, same machine and client, with the raw JetStream ceilings
bench *ARGS:
    {{venv}}/python -m bench {{ARGS}}
