"""`genrail up --demo`: show the system working, as a user would use it."""

from __future__ import annotations

import time
import uuid

import httpx
from rich.console import Console
from rich.pretty import Pretty


def run_demo(api_url: str, console: Console) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as api:
        user = api.post("/v1/users", json={"email": f"demo-{uuid.uuid4().hex[:8]}@example.com"}).json()
        headers = {"Authorization": f"Bearer {user['api_key']}"}
        console.rule("demo")
        console.print(f"registered {user['email']} with {user['balance']} free credits")
        job = api.post("/v1/generate/copy", headers=headers, json={
            "product_name": "Trailblazer 2 hiking boots", "tone": "bold", "length": "medium",
            "product_description": "Waterproof full-grain leather, a grippy Vibram sole, 1.1 kg the pair."}).json()
        console.print(f"created copy job {job['id']} ({job['status']}, cost {job['cost']})")
        deadline = time.monotonic() + 30
        while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = api.get(f"/v1/jobs/{job['id']}", headers=headers).json()
        console.print(f"job {job['status']}:")
        console.print(Pretty(job["output"] or job["error"]))
        credits = api.get("/v1/credits", headers=headers).json()
        console.print(f"balance now {credits['balance']}; try it yourself: {api_url}/docs")
        console.print(f"  curl -H 'Authorization: Bearer {user['api_key']}' {api_url}/v1/jobs")
        console.rule()
