"""The event stream of one HTTP scheduler (Mesos' v1 scheduler API, SUBSCRIBE).

An :class:`EventStream` is a virtual peer of the master's transport Server
(offerd.common.transport): the actor's sends to the framework land in its
bounded queue as offerd Events, already serialized, and never block. The HTTP
worker thread that answered the SUBSCRIBE drains the queue in :meth:`body`,
converts each Event to ``mesos.v1.scheduler.Event``, encodes it as JSON or
protobuf (the request's Accept) and writes it as one RecordIO record of the
chunked response (https://mesos.apache.org/documentation/latest/scheduler-http-api/).

The stream ends when the master ends it (failover to another connection,
teardown, removal: what is queued is written first), when the client goes
away (its socket reads end-of-file, or a write fails), or when the client
stops reading: the queue is bounded in events and bytes, and the transport
drops a sink whose oldest queued event waited past its stall timeout. The
last two are reported to the master as a lost peer, as a ZeroMQ scheduler's
broken connection is.
"""

from __future__ import annotations

from offerd.common.event_stream import (  # noqa: F401  (re-exported for the master's modules)
    JSON, MAX_QUEUED_BYTES, MAX_QUEUED_EVENTS, POLL_SECONDS, PROTOBUF, EventStream as _EventStream,
    is_stream_peer, peer_id)
from offerd.proto import mesos_v1_scheduler_pb2 as v1_scheduler
from offerd.proto import offerd_pb2 as pb


class EventStream(_EventStream):
    """A bounded queue of serialized offerd Events between the actor and one response
    (the queue, its bounds and the response body: offerd.common.event_stream)."""

    event_type = pb.Event
    v1_event_type = v1_scheduler.Event
