"""Pieces of the standalone mode: everything in one process, nothing to install beforehand."""
