"""The diff service: applies layer blobs onto mounts and computes layers from mounts.

``differ`` fixes the contract, ``applier`` and ``walking`` implement it with
``archive`` (safe tar extraction), ``compression`` and ``mounts``; the
servicer and ``main`` put it on a socket as a proxy plugin.
"""
