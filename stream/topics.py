"""Every topic name in one place. A deployment may prefix them (``topic_prefix``)."""

from __future__ import annotations

RAW_POSTS = "posts.raw"
ASSESSED_POSTS = "posts.assessed"
TICKET_EVENTS = "tickets.events"
DEAD_LETTER = "deadletter"

ALL = (RAW_POSTS, ASSESSED_POSTS, TICKET_EVENTS, DEAD_LETTER)

# Partitions per topic when the transport creates them. Posts are keyed by
# post id, ticket events by ticket id, so order per key is kept.
PARTITIONS = {RAW_POSTS: 3, ASSESSED_POSTS: 3, TICKET_EVENTS: 1, DEAD_LETTER: 1}

# Dead-letter messages carry the original bytes as the value and these headers.
DLQ_REASON = "yuqing.dlq.reason"
DLQ_TOPIC = "yuqing.dlq.topic"
DLQ_PARTITION = "yuqing.dlq.partition"
DLQ_OFFSET = "yuqing.dlq.offset"
DLQ_STAGE = "yuqing.dlq.stage"
DLQ_AT = "yuqing.dlq.at"
# Only on a dead letter whose value had to be cut to fit: the original length in bytes.
DLQ_TRUNCATED = "yuqing.dlq.truncated_from"


def qualified(name: str, prefix: str = "yuqing.") -> str:
    return f"{prefix}{name}"

# Crawl health (contract ``crawl_health``), keyed by source id. Not in ALL: the
# crawler stage creates it when it first reports.
CRAWL_HEALTH = "crawl.health"
