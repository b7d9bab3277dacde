"""The one exception type the PDU codec raises."""


class PduError(ValueError):
    """A PDU or a text could not be decoded or encoded; the message says why."""
