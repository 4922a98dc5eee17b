"""Ground-truth answer quality per arm and task, told to the workload generator only.

The proxy never sees this table (it is served at ``GET /admin/truth`` for
``symphony load``, which turns it into noisy feedback scores). It is built so a
learner has something to find: the dearest arms are not best at everything, and
cheap arms win some tasks outright (DeepSeek at extraction, Gemini Flash at
summaries, Grok Mini at reasoning).
"""

from __future__ import annotations

from symphony.catalog import Catalog

TASKS = ("chat", "code", "summarize", "extract", "reasoning")

#                                      chat  code  summ  extr  reas
QUALITY: dict[str, tuple[float, ...]] = {
    "openai/gpt-4o": (0.88, 0.84, 0.82, 0.83, 0.83),
    "openai/gpt-4o-mini": (0.80, 0.70, 0.76, 0.78, 0.64),
    "anthropic/claude-sonnet-4-5": (0.84, 0.93, 0.85, 0.82, 0.86),
    "anthropic/claude-3-5-haiku-latest": (0.76, 0.74, 0.80, 0.77, 0.62),
    "gemini/gemini-2.5-flash": (0.77, 0.72, 0.90, 0.79, 0.74),
    "perplexity/sonar": (0.72, 0.55, 0.78, 0.66, 0.60),
    "venice/llama-3.3-70b": (0.70, 0.62, 0.70, 0.68, 0.58),
    "grok/grok-3-mini": (0.74, 0.70, 0.68, 0.70, 0.90),
    "deepseek/deepseek-chat": (0.73, 0.86, 0.71, 0.89, 0.80),
}
# A world where the champion's table is wrong about two tasks (``PUT /admin/truth/{task}``, used by
# ``symphony learner-week``): for reasoning and extraction, the arms its `default` table ranks first
# answer badly and two it ranks low answer best. Arms not named keep their quality above.
CHAMPION_WRONG: dict[str, dict[str, float]] = {
    task: {
        "openai/gpt-4o-mini": 0.35,
        "anthropic/claude-3-5-haiku-latest": 0.35,
        "gemini/gemini-2.5-flash": 0.35,
        "grok/grok-3-mini": 0.95,
        "deepseek/deepseek-chat": 0.92,
    }
    for task in ("reasoning", "extract")
}
# Named worlds for the workload tools: task -> arm -> quality, over the built-in table.
SCENARIOS: dict[str, dict[str, dict[str, float]]] = {"built-in": {}, "champion-wrong": CHAMPION_WRONG}
# An arm the table does not know (a model added to the catalog later) is middling at everything.
DEFAULT_QUALITY = 0.6


def truth_table(catalog: Catalog) -> dict[str, dict[str, float]]:
    """``{"provider/model": {task: quality in [0, 1]}}`` for every arm in the catalog."""
    default = (DEFAULT_QUALITY,) * len(TASKS)
    return {arm: dict(zip(TASKS, QUALITY.get(arm, default), strict=True)) for arm in catalog.arms}
