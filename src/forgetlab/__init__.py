"""forgetlab: forgetting in post-training, quantified.

A two-mode mixture models an old task and a new task; post-training methods move its weight and
means; forgetlab measures mass forgetting and old-component drift and checks them against the
theory's exact predictions.
"""

__version__ = "0.1.0"
