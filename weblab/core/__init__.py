"""The leaf of weblab: errors, processes, paths, CPU sets, cgroups, bounded waits and run state.

Everything else may import it; it imports nothing of weblab's other layers (see docs/layers.md).
"""
