"""misuse: detect the misuse of IoT devices and of the systems people operate through them.

Data flows one way::

    ingest -> events -> features -> detectors / rules -> profiles -> alerts -> sinks

See ``docs/events.md`` for the event model every source is turned into.
"""

from misuse.errors import (
    InvalidParameterError,
    MisuseError,
    NotFittedError,
    ParseError,
    SchemaError,
)
from misuse.events import Event

__all__ = [
    "Event",
    "InvalidParameterError",
    "MisuseError",
    "NotFittedError",
    "ParseError",
    "SchemaError",
]
__version__ = "0.1.0"
