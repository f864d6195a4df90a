"""Whisperfleet's common package: schemas, errors, typed streams and HTTP clients.

Every service imports its wire types from here; nothing on the wire is defined twice.
"""
