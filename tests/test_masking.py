"""Passwords in URLs: hidden wherever a URL is shown or recorded."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from rlharness.masking import mask
from rlharness.results import provenance


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://user:secret@db:5432/s", "postgresql://user:***@db:5432/s"),
        ("postgresql+psycopg://u:p%40ss@h/s", "postgresql+psycopg://u:***@h/s"),
        ("--storage=postgresql://u:with@at@h/s", "--storage=postgresql://u:***@h/s"),
        (
            "a postgresql://u:x@h/s and mysql://v:y@k/t",
            "a postgresql://u:***@h/s and mysql://v:***@k/t",
        ),
        ("postgresql://user@db/s", "postgresql://user@db/s"),
        ("sqlite:////tmp/x/optuna.db", "sqlite:////tmp/x/optuna.db"),
        ("no url here: a:b@c", "no url here: a:b@c"),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        (
            "postgresql:///db?user=u&password=s3cret&sslmode=require",
            "postgresql:///db?user=u&password=***&sslmode=require",
        ),
        ("postgresql://u:with space@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://h:5432/db and a@b", "postgresql://h:5432/db and a@b"),
    ],
)
def test_mask_hides_passwords_only(text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pa ss word@h/db",
        "postgresql://u:p%40ss%20word@h/db",
        "postgresql://u@h/db?password=pa%20ss%20word",
        "postgresql:///db?user=u&password=hunter22",
    ],
)
def test_mask_with_its_url_hides_that_password_in_any_spelling(url):
    parsed = make_url(url)
    password = parsed.password or parsed.query["password"]
    echoed = f"connection to {url} failed: password {password!r} rejected for {password}"
    shown = mask(echoed, url)
    assert str(password) not in shown and "***" in shown


def test_provenance_never_records_a_password():
    record = provenance(["rlharness", "sweep", "x.yaml", "--storage", "postgresql://u:pw1@h/s"])
    assert record["command"][-1] == "postgresql://u:***@h/s"
