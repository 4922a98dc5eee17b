"""The learner's challenger reaches Redis only while the live flag says the learner is on."""

from __future__ import annotations

import redis

from sinks.redis_state import ChallengerSink
from symphony.flags import Flags
from symphony.keys import CHALLENGER_KEY, FLAGS_KEY
from symphony.redis_server import RedisServer
from symphony.serving import PublishedChallenger


def test_the_challenger_is_published_only_while_the_learner_is_on(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    sink = ChallengerSink(redis_server.url, Flags(learner_enabled=True, traffic_split=0.05))
    partition = sink.build("challenger", 0, 1)
    try:
        redis_client.hset(FLAGS_KEY, "learner_enabled", "false")
        partition.write_batch([PublishedChallenger("learned-1", b'{"version": "learned-1", "weights": {}}')])
        assert redis_client.get(CHALLENGER_KEY) is None
        redis_client.hset(FLAGS_KEY, "learner_enabled", "true")
        partition.write_batch([PublishedChallenger("learned-2", b'{"version": "learned-2", "weights": {}}')])
        assert redis_client.get(CHALLENGER_KEY) == b'{"version": "learned-2", "weights": {}}'
        redis_client.delete(FLAGS_KEY, CHALLENGER_KEY)  # no live value: the default (on) holds
        partition.write_batch([PublishedChallenger("learned-3", b'{"version": "learned-3", "weights": {}}')])
        assert redis_client.get(CHALLENGER_KEY) is not None
    finally:
        partition.close()


def test_a_frozen_challenger_keeps_serving_while_the_learner_publishes_nothing(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    sink = ChallengerSink(redis_server.url, Flags(learner_enabled=True, traffic_split=0.05))
    partition = sink.build("challenger", 0, 1)
    frozen = b'{"version": "frozen", "weights": {}}'
    try:
        redis_client.set(CHALLENGER_KEY, frozen)
        redis_client.hset(FLAGS_KEY, "challenger_frozen", "true")
        partition.write_batch([PublishedChallenger("learned-1", b'{"version": "learned-1", "weights": {}}')])
        assert redis_client.get(CHALLENGER_KEY) == frozen
        redis_client.hset(FLAGS_KEY, "challenger_frozen", "off")
        partition.write_batch([PublishedChallenger("learned-2", b'{"version": "learned-2", "weights": {}}')])
        assert redis_client.get(CHALLENGER_KEY) == b'{"version": "learned-2", "weights": {}}'
    finally:
        redis_client.delete(FLAGS_KEY, CHALLENGER_KEY)
        partition.close()
