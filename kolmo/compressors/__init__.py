"""Compressor back ends, one per module. See :mod:`kolmo.compressors.base` for the interface."""
