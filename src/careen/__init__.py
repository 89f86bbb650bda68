"""Careen keeps a fleet of container images patched.

It reads the scan results of every image in a Harbor registry, selects the images that break a
policy (by default the 2017 seed's "medium >= 3 or high > 0"), maps each to its Dockerfile
folder, rebuilds and pushes it, asks Harbor to rescan and checks the counts went down.

The package is a library; ``careen.cli`` is a thin command line over it.
"""

__version__ = "0.1.0"
