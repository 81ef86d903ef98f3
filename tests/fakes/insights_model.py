"""An honest in-memory `libs.llm.insights.InsightsModel` for unit tests of code that asks one
(no HTTP): it answers queued results in order (an Insights, or an exception to raise, e.g.
`InsightsFailed("refused")` or `ModelUnavailable("down", retry_after=5)`), else `default`,
and records every question it was asked (template, turns, campaign)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from libs.contracts import Insights
from libs.llm.insights import InsightsModel, Turn
from libs.llm.template import InsightTemplate


@dataclass(frozen=True)
class Asked:
    template: InsightTemplate
    turns: tuple[Turn, ...]
    campaign: str


@dataclass
class ScriptedInsights:
    default: Insights = field(default_factory=lambda: Insights(model="fake-model", summary="ok"))
    asked: list[Asked] = field(default_factory=list)
    healthy: bool = True  # what check() answers
    _results: deque[Insights | Exception] = field(default_factory=deque)

    def queue(self, *results: Insights | Exception) -> None:
        self._results.extend(results)

    async def ask(
        self, template: InsightTemplate, turns: Sequence[Turn], *, campaign: str
    ) -> Insights:
        self.asked.append(Asked(template, tuple(turns), campaign))
        result = self._results.popleft() if self._results else self.default
        if isinstance(result, Exception):
            raise result
        return result

    async def check(self) -> bool:
        return self.healthy


if TYPE_CHECKING:
    _model: type[InsightsModel] = ScriptedInsights
