"""Generation options: defaults, validation messages, never-raising parse, merge."""

from __future__ import annotations

from mentator.config.options import (
    CORE_DEFAULTS,
    JSON_DEFAULTS,
    OPTION_KEYS,
    merge_options,
    option_descriptions,
    parse_options,
    validate_options,
)


def test_keys_in_reference_order() -> None:
    assert OPTION_KEYS == (
        "temperature", "topP", "topK", "minP", "maxTokens", "repeatPenalty", "repeatPenaltyNum",
        "presencePenalty", "frequencyPenalty", "mirostat", "mirostatTau", "mirostatEta",
        "penalizeNewline", "stopSequences", "trimWhitespace", "seed", "tokenBias",
        "evaluationPriority", "contextShiftSize", "disableContextShift",
    )  # fmt: skip
    assert set(option_descriptions()) == set(OPTION_KEYS)
    assert all(option_descriptions().values())


def test_default_tables() -> None:
    assert dict(CORE_DEFAULTS) == {
        "temperature": 0.8, "topP": 0.9, "topK": 40, "minP": 0, "maxTokens": 128,
        "repeatPenalty": 1.1, "repeatPenaltyNum": 64, "presencePenalty": 0,
        "frequencyPenalty": 1.1, "mirostat": 0, "mirostatTau": 5, "mirostatEta": 0.1,
        "penalizeNewline": True, "stopSequences": [], "trimWhitespace": True, "tokenBias": {},
        "evaluationPriority": 5, "contextShiftSize": 0, "disableContextShift": False,
    }  # fmt: skip
    assert JSON_DEFAULTS["temperature"] == 0 and JSON_DEFAULTS["maxTokens"] == 4096
    assert JSON_DEFAULTS["topP"] == 0.1 and JSON_DEFAULTS["penalizeNewline"] is False
    assert "seed" not in JSON_DEFAULTS and "seed" not in CORE_DEFAULTS
    assert list(JSON_DEFAULTS) == [key for key in OPTION_KEYS if key != "seed"]


def test_validate_messages_use_original_wording() -> None:
    assert validate_options({"temperature": 5}) == ["body/options/temperature must be <= 2"]
    assert validate_options({"temperature": -1}) == ["body/options/temperature must be >= 0"]
    assert validate_options({"topK": 1.5}) == ["body/options/topK must be integer"]
    assert validate_options({"topP": "x"}) == ["body/options/topP must be number"]
    assert validate_options({"topK": True}) == ["body/options/topK must be integer"]
    assert validate_options({"penalizeNewline": 1}) == [
        "body/options/penalizeNewline must be boolean"
    ]
    assert validate_options({"stopSequences": "x"}) == ["body/options/stopSequences must be array"]
    assert validate_options({"stopSequences": ["a", 2]}) == [
        "body/options/stopSequences/1 must be string"
    ]
    assert validate_options({"tokenBias": []}) == ["body/options/tokenBias must be object"]
    assert validate_options({"tokenBias": {"a": "b"}}) == [
        "body/options/tokenBias/a must be number"
    ]
    assert validate_options({"seed": -1}) == ["body/options/seed must be >= 0"]
    assert validate_options([]) == ["body/options must be object"]
    assert validate_options({"repeatPenalty": -2.5}) == ["body/options/repeatPenalty must be >= -2"]


def test_validate_accepts_valid_null_and_unknown() -> None:
    assert validate_options({"temperature": 2, "topK": 40.0, "seed": None, "foo": "bar"}) == []
    assert validate_options(dict(CORE_DEFAULTS)) == []
    assert validate_options(dict(JSON_DEFAULTS)) == []


def test_validate_lists_every_bad_key_in_key_order() -> None:
    assert validate_options({"maxTokens": 0, "temperature": 3}) == [
        "body/options/temperature must be <= 2",
        "body/options/maxTokens must be >= 1",
    ]


def test_parse_fill_replaces_invalid_and_absent() -> None:
    parsed = parse_options(
        {"temperature": 9, "topK": 20, "foo": 1}, fill=True, defaults=CORE_DEFAULTS
    )
    assert parsed["temperature"] == 0.8
    assert parsed["topK"] == 20
    assert "foo" not in parsed and "seed" not in parsed
    assert list(parsed) == [key for key in OPTION_KEYS if key != "seed"]


def test_parse_only_given_drops_invalid() -> None:
    parsed = parse_options(
        {"temperature": 9, "topK": 20.0, "seed": 7}, fill=False, defaults=CORE_DEFAULTS
    )
    assert parsed == {"topK": 20, "seed": 7}
    assert isinstance(parsed["topK"], int)


def test_parse_seed_rules() -> None:
    assert "seed" not in parse_options({"seed": -3}, fill=True, defaults=JSON_DEFAULTS)
    assert "seed" not in parse_options({"seed": 1.5}, fill=True, defaults=JSON_DEFAULTS)
    assert parse_options({"seed": 0}, fill=False, defaults={})["seed"] == 0


def test_parse_never_raises_and_copies_containers() -> None:
    assert parse_options("nonsense", fill=False, defaults={}) == {}  # type: ignore[arg-type]
    parsed = parse_options({}, fill=True, defaults=JSON_DEFAULTS)
    stops = parsed["stopSequences"]
    assert isinstance(stops, list)
    stops.append("x")
    assert JSON_DEFAULTS["stopSequences"] == []


def test_merge_partial_request_over_config_defaults() -> None:
    config = parse_options({"maxTokens": 999}, fill=True, defaults=JSON_DEFAULTS)
    merged = merge_options(config, {"temperature": 0.5})
    assert merged["temperature"] == 0.5
    assert merged["maxTokens"] == 999  # not reset to the core default 128 (the original's bug)
    assert merged["topP"] == 0.1
    assert merge_options(config, None) == config
    assert merge_options(config, {"seed": 3})["seed"] == 3


def test_options_without_effect_say_so_in_the_template_and_the_api_doc() -> None:
    # The engine gets no field for these (engine/client.py IGNORED_OPTIONS, the README's
    # "Differences"); their help text feeds the config template comments and the OpenAPI text,
    # and once claimed an effect for contextShiftSize / disableContextShift.
    from mentator.config.template import full_template_text

    template = full_template_text()
    for key in ("penalizeNewline", "evaluationPriority", "contextShiftSize", "disableContextShift"):
        description = option_descriptions()[key]
        assert "no effect" in description, (key, description)
        assert description in template
