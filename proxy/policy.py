"""Moved to ``symphony.serving``, where the learner evaluates the same numbers; kept until importers move."""

from symphony.serving import ChallengerPolicy, ChampionPolicy, RoutingPolicy

__all__ = ["ChallengerPolicy", "ChampionPolicy", "RoutingPolicy"]
