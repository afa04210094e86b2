"""`fraudstream demo`: the whole pipeline on this machine, with a summary a person can check.

Services, topics and schema; a default model (trained on first run); the processor as a real
`fraudstream process` subprocess; normal and hacker producers plus a trickle of malformed events; a
live view; and at the end the figures that matter, all computed from the data itself. With ``--keep``
the traffic, the processor and the analyst console go on until Ctrl-C.

The traffic runs on a simulated clock (``simulate/live.py``): the simulated world continues right
after the history the model was trained on, at a time scale that makes the requested rate, so every
account transacts as often per simulated hour as in training. Before the measured part, the
processor is warmed up with the preceding simulated days (as fast as it can take them), because a
fraud system that just started knows no account.

Modules: ``run`` (the order of events), ``processor`` (the child processor), ``traffic`` (producers),
``summary`` (the figures' queries), ``view`` (the terminal), ``hold`` and ``hold_producer`` (``--keep``),
``default_model``.
"""

from fraudstream.demo.default_model import ensure_default_model
from fraudstream.demo.processor import processor_env
from fraudstream.demo.run import run_demo
from fraudstream.demo.summary import DemoSummary
from fraudstream.demo.view import summary_table

__all__ = ["DemoSummary", "ensure_default_model", "processor_env", "run_demo", "summary_table"]
