"""Pick the transport the settings ask for, and qualify topic names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream import topics as T

if TYPE_CHECKING:
    from stream.transport import Transport
    from yuqing.settings import Settings


def topic(settings: Settings, name: str) -> str:
    """The deployment's name for topic ``name`` (e.g. ``posts.raw`` -> ``yuqing.posts.raw``)."""
    return T.qualified(name, settings.transport.topic_prefix)


def partition_count(name: str, prefix: str | None = None) -> int:
    """Partitions to create for a fully qualified topic name.

    With ``prefix`` the base name is what follows it; without, the longest
    known base name the topic ends with. Unknown topics get one partition.
    """
    if prefix is not None and name.startswith(prefix):
        base = name[len(prefix) :]
        if base in T.PARTITIONS:
            return T.PARTITIONS[base]
    if name in T.PARTITIONS:
        return T.PARTITIONS[name]
    best = ""
    for base in T.PARTITIONS:
        if name.endswith("." + base) and len(base) > len(best):
            best = base
    return T.PARTITIONS[best] if best else 1


def open_transport(settings: Settings) -> Transport:
    """Open the transport named by ``settings.transport.kind``; the caller closes it."""
    ts = settings.transport
    # Imported here: the Kafka client is only loaded where it is used, and the
    # transports import partition_count from this module.
    if ts.kind == "embedded":
        from stream.embedded import EmbeddedTransport

        return EmbeddedTransport(settings.data_path(ts.embedded_path), topic_prefix=ts.topic_prefix,
                                 retention_hours=ts.embedded_retention_hours,
                                 max_message_bytes=settings.limits.max_message_bytes)
    if ts.kind == "kafka":
        from stream.kafka import KafkaTransport

        kt = KafkaTransport(ts.kafka, topic_prefix=ts.topic_prefix)
        # The producer's own max_request_size is Kafka's 1 MiB default, the
        # ceiling of this setting; stages check against the configured value.
        kt.max_message_bytes = settings.limits.max_message_bytes  # type: ignore[attr-defined]
        return kt
    raise ValueError(f"unknown transport kind {ts.kind!r}")
