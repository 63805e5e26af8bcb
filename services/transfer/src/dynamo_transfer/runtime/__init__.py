"""The transfer service at run time.

Every instance takes commands (intake) and serves the API. One instance at a time, the
leader (it holds a PostgreSQL session advisory lock), runs the queue: the scheduler (sources,
batches, submission), the FTS poller, deletions, and the reports to the inventory. The
database is the truth: a leader that dies leaves tasks in states from which the next leader
carries on, without losing any and without doing any twice.

``core``: the runtime object the service's lifespan owns, and leadership. The parts:
``intake`` (commands in), ``scheduler`` (placement and submission), ``deletions``,
``polling`` (FTS jobs), ``recovery`` (what a previous leader left submitted), ``outcomes``
(each attempt's result), ``reports`` (to the inventory) and ``relay`` (the event outbox).
"""

from dynamo_transfer.runtime.core import TransferRuntime

__all__ = ["TransferRuntime"]
