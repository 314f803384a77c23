"""Schemathesis drives every operation of our own OpenAPI document over HTTP against a real
server process, with all of its checks: statuses, headers, bodies and content types as
documented, valid input accepted, invalid input refused, no server errors, 405 with Allow,
and its stateful phase. It must find nothing.

Each group of operations runs with its own organization and credential, so the fuzzer
never revokes or rotates what it is using: the API-key operations run with the owner's
dashboard session (a credential no API-key operation can end), the others with an API
key whose operations they do not include.

The quick version runs in the suite; the deep one (at least 10,000 cases, stateful phase
included) is ``VENTRYX_FUZZ_DEEP=1 uv run pytest tests/test_openapi_fuzz.py -s``.
"""

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT, bearer

SCHEMATHESIS = Path(sys.executable).parent / "st"
DEEP = os.environ.get("VENTRYX_FUZZ_DEEP") == "1"
SEED = "20261201"
GROUPS = {
    "api-keys": ["API keys"],
    "workflows": ["Workflows"],
    "events": ["Events"],
    "organization": ["Organization", "Members", "Sessions", "Audit log", "Identity", "Health"],
}
# DELETE /v1/api-keys/{id} revokes a key, which stays readable with status "revoked" (for
# lists, the audit trail, the dashboard); use_after_free expects a deleted object to be 404.
GROUP_OPTIONS = {"api-keys": ["--exclude-checks", "use_after_free"]}


async def owner_session(client, ledger, org) -> str:
    """The owner's dashboard session, its one-time password changed."""
    login = await client.post(
        "/v1/sessions", json={"email": org.owner_email, "password": org.owner_password}
    )
    assert login.status_code == 201, login.text
    token = ledger.add(login.json()["data"]["token"])
    new_password = ledger.add(f"fuzz-{org.id}-password")
    changed = await client.post(
        "/v1/members/me/password",
        headers=bearer(token),
        json={"current_password": org.owner_password, "new_password": new_password},
    )
    assert changed.status_code == 200, changed.text
    return token


async def run_schemathesis(url: str, credential: str, group: str) -> tuple[int, str]:
    # Quick: random generation and the stateful phase, a few seconds per group. Deep: also
    # the coverage phase (boundary and invalid values of every field, minutes).
    options = (
        ["--max-examples", "300", "--workers", "2"]
        if DEEP
        else ["--max-examples", "10", "--workers", "1", "--phases", "examples,fuzzing,stateful"]
    )
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(ROOT / "tests" / "schemathesis.toml"),
        "run",
        f"{url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {credential}",
        "--checks",
        "all",
        "--seed",
        SEED,
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        *options,
        *[option for tag in GROUPS[group] for option in ("--include-tag", tag)],
        *GROUP_OPTIONS.get(group, []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        },
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=3000 if DEEP else 240)
    return process.returncode, output.decode(errors="replace").replace(credential, "[secret]")


@pytest.mark.timeout(3600 if DEEP else 300)
async def test_schemathesis_finds_nothing_in_any_operation(server, client, ledger, make_org):
    credentials = {}
    for group in GROUPS:
        org = await make_org(f"Fuzzed {group}")
        credentials[group] = (
            (await owner_session(client, ledger, org)) if (group == "api-keys") else org.admin_key
        )
    results = await asyncio.gather(
        *[run_schemathesis(server.url, credentials[group], group) for group in GROUPS]
    )
    failed = {}
    for group, (returncode, report) in zip(GROUPS, results, strict=True):
        cases = re.search(r"(\d+) generated", report)
        print(f"{group}: {cases[1] if cases else '?'} cases generated")
        if returncode != 0:
            failed[group] = report[-6000:]
    assert not failed, "\n\n".join(f"== {group} ==\n{report}" for group, report in failed.items())
