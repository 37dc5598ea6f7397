"""Every error the gateway raises on purpose, rooted at :class:`GatewayError`.

    GatewayError
    ├── ConfigError (ValueError)          bad configuration; names the key
    ├── PayloadError (ValueError)         bad input from outside; names the field
    ├── UsageError (ValueError)           a command asked for what cannot work (says why)
    │   └── FilterError                   an event filter that selects nothing by construction
    ├── JournalError
    │   ├── NotAJournalError              the file is not a gateway journal; left untouched
    │   ├── JournalVersionError           written by a newer gateway; left untouched
    │   ├── JournalCorruptError           the tail of the chain does not check out
    │   │   └── JournalTailLostError      the journal ends below its high-water mark
    │   └── JournalWriteError (OSError)   an append could not be made durable (disk full, I/O)
    ├── ChainError                        `verify` found a bad row; names its seq
    ├── ControlError                      the CLI could not talk to the running daemon
    ├── CloudError                        a cloud sink could not reach or use AWS
    │   └── CredentialsError              no usable AWS credentials (none, expired, refused)
    ├── BrokerSetupError                  the local broker's lock-down could not be written
    └── ScheduleError                     a schedule change that cannot be made (no such
                                          schedule, no meal to skip, the clock unsynchronised)

Errors from sqlite3, paho/aiomqtt and pydantic are translated at the boundary with
``raise ... from e`` so that a person sees what they need (the key, the seq, the topic), and the
original stays on ``__cause__`` for a traceback.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError, ValueError):
    """The configuration is invalid: the message names the key and what was wrong."""


class PayloadError(GatewayError, ValueError):
    """Input from outside (MQTT, the control socket) could not be understood.

    ``field`` names the offending field ("" when the whole payload is bad) so that the counter
    and the log line say exactly what a misbehaving device sent.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class UsageError(GatewayError, ValueError):
    """A command was asked for something that cannot work; the message says why."""


class FilterError(UsageError):
    """An event filter whose bounds contradict each other (``--to-seq`` before ``--from-seq``)."""


class JournalError(GatewayError):
    """Something about the journal file itself."""


class NotAJournalError(JournalError):
    """The file exists but is not a gateway journal; it is never modified."""


class JournalVersionError(JournalError):
    """The journal was written by a newer gateway than this one; it is never modified."""


class JournalCorruptError(JournalError):
    """The journal opened but its tail does not check out (a torn or edited last row)."""


class JournalTailLostError(JournalCorruptError):
    """The journal ends below the highest seq this gateway answered (its ``-wal`` was lost):
    seq up to ``highest_seq`` may have been sent by a sink and must never be used again."""

    def __init__(self, message: str, highest_seq: int) -> None:
        self.highest_seq = highest_seq
        super().__init__(message)


class JournalWriteError(JournalError, OSError):
    """An append could not be made durable (disk full, I/O error, read-only file)."""


class ChainError(GatewayError):
    """``fmfb journal verify`` found a row that breaks the chain or the sequence."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"seq {seq}: {reason}")


class ControlError(GatewayError):
    """The CLI could not reach the running daemon, or the daemon refused the request."""


class CloudError(GatewayError):
    """A cloud sink could not reach or use AWS (the sink stays offline and retries)."""


class CredentialsError(CloudError):
    """No usable AWS credentials: none configured, the provider refused, or they expired."""


class BrokerSetupError(GatewayError):
    """The local broker's lock-down (users, passwords, ACLs) could not be planned or written:
    a name that cannot be a broker user or topic, or ``mosquitto_passwd`` missing or failing."""


class ScheduleError(GatewayError):
    """A schedule change that cannot be made now: the message says why."""
