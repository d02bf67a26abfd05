"""Applications on top of the runtime: the HTML report, the labelling app and the Ray engine (they never import
each other).
"""
