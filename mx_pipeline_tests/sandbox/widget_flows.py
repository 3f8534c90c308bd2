"""Driving the sandbox's Connect page over plain HTTP, as a browser posts its forms, and reading what it delivers."""

import json
import re

import requests

DELIVERY = re.compile(r'<script type="application/json" id="mx-messages">(.*?)</script>', re.S)


def widget_url(mx, user, **options) -> str:
    body = {"widget_url": {"widget_type": "connect_widget", **options}}
    return mx.post(f"/users/{user}/widget_urls", json=body).json()["widget_url"]["url"]


def delivery(page: requests.Response) -> dict:
    """What the page tells its host: events, the origin they are posted to, a WebView's navigations."""
    return json.loads(DELIVERY.search(page.text).group(1))


def events(page: requests.Response) -> list[dict]:
    return delivery(page)["events"]


def member_connected(page: requests.Response) -> dict:
    (event,) = [e for e in events(page) if e["type"] == "mx/connect/memberConnected"]
    return event


def event_types(page):
    return [e["type"] for e in events(page)]


class Browser:
    """A person clicking through the page: follows redirects, remembers where the session lives, and keeps every
    event the pages delivered, in order (``delivered``)."""

    def __init__(self, url: str, **headers: str) -> None:
        self.http = requests.Session()
        self.delivered: list[dict] = []
        self.page = self._seen(self.http.get(url, headers=headers))
        self.session_url = self.page.url

    def _seen(self, page: requests.Response) -> requests.Response:
        if page.status_code == 200 and DELIVERY.search(page.text):
            self.delivered.extend(events(page))
        return page

    def post(self, step: str, redirects: bool = True, **form) -> requests.Response:
        self.page = self._seen(self.http.post(f"{self.session_url}/{step}", data=form, allow_redirects=redirects))
        return self.page

    def reload(self, **params: str) -> requests.Response:
        self.page = self._seen(self.http.get(self.session_url, params=params))
        return self.page


def connect(browser: Browser, password: str = "password") -> requests.Response:
    assert 'id="institution-mxbank"' in browser.page.text
    browser.post("institution", institution_code="mxbank")
    assert 'name="LOGIN"' in browser.page.text and 'name="PASSWORD"' in browser.page.text
    assert 'id="submit"' in browser.page.text
    return browser.post("credentials", LOGIN="mxuser", PASSWORD=password)
