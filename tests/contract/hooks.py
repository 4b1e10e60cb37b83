"""Schemathesis hooks for plantd's contract tests (tests/contract/main.rs sets the environment).

Every generated request carries both credentials the documents declare, as a client that has
them would: the bearer token (a device token on the plant, an API token on the hub) and an
admin's session (the cookie and its CSRF token). The session comes from signing in; a case that
signed out (or any 401) makes Schemathesis sign in again.
"""

import os
import time

import requests
from requests.adapters import HTTPAdapter
import schemathesis

BASE = os.environ["CONTRACT_BASE"]
CA = os.environ.get("CONTRACT_CA") or True
BEARER = os.environ["CONTRACT_BEARER"]
USER = os.environ["CONTRACT_USER"]
PASSWORD = os.environ["CONTRACT_PASSWORD"]
COOKIE = "plantd_session"


# The admin signs in from another loopback address than the fuzzing: Schemathesis feeds the
# user name it reads from GET /api/v1/admin/session into sign-ins with made-up passwords, which
# lock that name for the fuzzer's address (as they should), not for the admin's.
SIGN_IN_FROM = os.environ.get("CONTRACT_SIGN_IN_FROM", "127.0.0.2")


class FromAddress(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (SIGN_IN_FROM, 0)
        super().init_poolmanager(*args, **kwargs)


SIGN_IN = requests.Session()
SIGN_IN.mount("https://", FromAddress())


@schemathesis.auth(refresh_interval=60)
class Credentials:
    def get(self, case, ctx):
        # The fuzzed sign-ins beside this one may hold both password checks the server runs at
        # once: it answers 429 busy with Retry-After, as documented, and this waits as told.
        for _ in range(30):
            answer = SIGN_IN.post(
                f"{BASE}/api/v1/admin/login",
                json={"user": USER, "password": PASSWORD},
                verify=CA,
                timeout=30,
            )
            if answer.status_code != 429 or answer.json()["error"]["code"] != "busy":
                break
            time.sleep(min(int(answer.headers.get("Retry-After", "1")), 2))
        answer.raise_for_status()
        return {"session": answer.cookies[COOKIE], "csrf": answer.json()["csrf"]}

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {BEARER}"
        case.headers["X-CSRF-Token"] = data["csrf"]
        case.cookies = case.cookies or {}
        case.cookies[COOKIE] = data["session"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # The changes to a named user (a new password, a role, removal, sign-out everywhere) are
    # fuzzed on any user but the admin these runs sign in as: a new password Schemathesis made
    # up would lock the rest of the run out. Every other name goes as generated.
    params = case.path_parameters
    if params and "/api/v1/admin/users/{name}/" in case.path and params.get("name") == USER:
        params["name"] = USER + "-not"
