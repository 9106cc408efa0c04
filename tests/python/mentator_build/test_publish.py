from __future__ import annotations

from typing import Any

import pytest

from mentator_build.publish import (
    Destination,
    PublishError,
    _push_stream_error,
    destination,
    publish_requested,
    push_image,
)


def test_publish_flag_or_environment() -> None:
    assert publish_requested(True, {})
    assert publish_requested(False, {"MENTATOR_PUBLISH": "1"})
    assert publish_requested(False, {"MENTATOR_PUBLISH": "true"})
    assert not publish_requested(False, {"MENTATOR_PUBLISH": "0"})
    assert not publish_requested(False, {})


def test_destination_references() -> None:
    assert Destination(None, "vasilevvitalii").repository("mentator-llm-service") == (
        "vasilevvitalii/mentator-llm-service"
    )
    assert Destination("127.0.0.1:5000", None).repository("x") == "127.0.0.1:5000/x"
    assert Destination("127.0.0.1:5000", "team/ml").repository("x") == "127.0.0.1:5000/team/ml/x"


def test_flags_win_over_environment() -> None:
    env = {"MENTATOR_REGISTRY": "127.0.0.1:6000", "MENTATOR_NAMESPACE": "envns"}
    assert destination("127.0.0.1:5000", None, env) == Destination("127.0.0.1:5000", "envns")
    assert destination(None, None, env) == Destination("127.0.0.1:6000", "envns")


def test_docker_hub_needs_a_namespace() -> None:
    with pytest.raises(PublishError, match="--namespace"):
        destination(None, None, {})


@pytest.mark.parametrize("bad", ["http://127.0.0.1:5000", "host:port", "a/b"])
def test_bad_registry_is_refused(bad: str) -> None:
    with pytest.raises(PublishError, match="HOST\\[:PORT\\]"):
        destination(bad, None, {})


def test_bad_namespace_is_refused() -> None:
    with pytest.raises(PublishError, match="not a valid repository path"):
        destination(None, "Upper Case", {})


def test_errors_inside_the_push_stream_are_found() -> None:
    ok: list[dict[str, Any]] = [
        {"status": "Pushed"},
        {"aux": {"Tag": "latest", "Digest": "sha256:abc", "Size": 1}},
    ]
    assert _push_stream_error(ok) == (None, "sha256:abc")
    failed: list[dict[str, Any]] = [
        {"status": "Preparing"},
        {"errorDetail": {"message": "denied"}, "error": "denied"},
    ]
    assert _push_stream_error(failed) == ("denied", None)


def test_invalid_tag_is_refused_before_anything_is_pushed() -> None:
    # push_image checks the tags before it touches the client or the image
    where = Destination("127.0.0.1:5000", None)
    with pytest.raises(PublishError, match=r"not valid Docker tags: 1\.2\.0\+local"):
        push_image(None, None, "x", ["latest", "1.2.0+local"], where)  # type: ignore[arg-type]
