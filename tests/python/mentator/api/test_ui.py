"""The web UI's pages and assets come from the package, with a policy that allows only this host."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from mentator.api.routes.ui import PAGES, asset_names

# Any URL with a host in a page or asset (a CDN, a web font, a tracker) breaks the air gap.
_REMOTE = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(PAGES))
def test_pages_are_served_with_a_same_origin_policy(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert '<script src="/ui/common.js"' in response.text


def test_every_asset_a_page_names_is_served(client: TestClient) -> None:
    named: set[str] = set()
    for path in PAGES:
        named |= set(re.findall(r'(?:src|href)="/ui/([^"]+)"', client.get(path).text))
    assert {"common.js", "ui.css", "chat.js", "stat.js", "log-core.js", "log-chat.js"} <= named
    for name in named:
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"


def test_no_asset_names_another_host(client: TestClient) -> None:
    for name in asset_names():
        text = client.get(f"/ui/{name}").text
        # The SVG namespace is an identifier, not a request.
        hosts = [m for m in _REMOTE.findall(text) if "www.w3.org" not in m]
        assert hosts == [], f"{name} names a remote host: {hosts}"


def test_unknown_or_traversing_asset_is_404(client: TestClient) -> None:
    for path in ("/ui/nope.js", "/ui/..%2Fapp.py", "/ui/%2E%2E%2Froutes%2Fui.py"):
        response = client.get(path)
        assert response.status_code == 404, path


def test_untrusted_text_never_goes_through_innerhtml(client: TestClient) -> None:
    for name in asset_names():
        if name.endswith(".js"):
            text = client.get(f"/ui/{name}").text
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
                assert sink not in text, f"{name} uses {sink}"
