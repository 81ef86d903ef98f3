"""The insights settings: unset model = not configured; base URL and key follow OpenAI's."""

from __future__ import annotations

import pytest

from libs.llm.insights import ChatInsights, chat_insights
from libs.settings import Settings, SettingsError


def test_not_configured_without_a_model() -> None:
    assert chat_insights(Settings.from_env({"OPENAI_API_KEY": "sk-x"})) is None


async def test_defaults_follow_the_openai_settings() -> None:
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY": "sk-openai",
            "OPENAI_BASE_URL": "http://llm.local:8000/v1",
            "INSIGHTS_MODEL": "qwen",
        }
    )
    assert settings.insights_base_url == "http://llm.local:8000/v1"
    assert settings.insights_api_key == "sk-openai"
    model = chat_insights(settings)
    assert isinstance(model, ChatInsights)
    assert (model.model, model.context_tokens, model.max_attempts) == ("qwen", 16000, 4)
    await model.aclose()
    own = Settings.from_env(
        {
            "OPENAI_API_KEY": "sk-openai",
            "INSIGHTS_MODEL": "llama3.1",
            "INSIGHTS_BASE_URL": "http://localhost:11434/v1",
            "INSIGHTS_API_KEY": "ollama",
            "INSIGHTS_CONTEXT_TOKENS": "8192",
            "INSIGHTS_MAX_ATTEMPTS": "2",
            "INSIGHTS_TIMEOUT_SECONDS": "30",
        }
    )
    assert (own.insights_base_url, own.insights_api_key) == ("http://localhost:11434/v1", "ollama")
    assert (own.insights_context_tokens, own.insights_max_attempts) == (8192, 2)
    assert own.insights_timeout == 30.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INSIGHTS_CONTEXT_TOKENS", "100"),
        ("INSIGHTS_MAX_ATTEMPTS", "0"),
        ("INSIGHTS_TIMEOUT_SECONDS", "inf"),
    ],
)
def test_bad_values_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


async def test_the_scripted_model_for_unit_tests() -> None:
    from libs.contracts import Insights
    from libs.llm.insights import InsightsFailed, Turn
    from libs.llm.template import DEFAULT
    from tests.fakes.insights_model import ScriptedInsights

    model = ScriptedInsights()
    model.queue(InsightsFailed("refused"), Insights(model="m", outcome="won"))
    turns = [Turn(start=0.0, end=1.0, role="agent", text="hi")]
    with pytest.raises(InsightsFailed):
        await model.ask(DEFAULT, turns, campaign="c")
    assert (await model.ask(DEFAULT, turns, campaign="c")).outcome == "won"
    assert (await model.ask(DEFAULT, turns, campaign="c")).summary == "ok"
    assert [a.campaign for a in model.asked] == ["c", "c", "c"]
