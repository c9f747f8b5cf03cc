"""The composition root's contract: built once, lazily; replace() keeps what was given; no mutation."""

from __future__ import annotations

import pytest

from sora_relay.runtime.container import Container
from sora_relay.settings import Settings

SETTINGS = Settings(tasks_table_name="tasks", videos_bucket_name="videos", webhook_timeout_seconds=3)


class FakeHttp:
    """Stands in for SafeHttp: the webhook sender built from it must use it."""


def test_nothing_is_built_until_asked_and_then_once():
    container = Container(SETTINGS)
    assert container.built() == ()
    sender = container.webhook_sender
    assert container.webhook_sender is sender
    assert set(container.built()) == {"outbound_http", "webhook_sender"}


def test_replace_keeps_the_settings_and_what_was_given_and_rebuilds_the_rest():
    fake = FakeHttp()
    first = Container(SETTINGS).replace(outbound_http=fake)
    second = first.replace(provider_http=object())
    assert second.settings is SETTINGS and second.outbound_http is fake
    assert second.webhook_sender is not first.webhook_sender  # each container builds its own
    assert second.webhook_sender._http is fake  # built from the one given


def test_a_container_is_not_changed_in_place_and_names_only_collaborators():
    container = Container(SETTINGS)
    with pytest.raises(AttributeError):
        container.settings = SETTINGS  # type: ignore[misc]
    with pytest.raises(TypeError, match="Not a collaborator: nonsense"):
        Container(SETTINGS, nonsense=1)
