"""The chunk worker. Importing it bounds the process's heap (`shared.heap`): a worker streams
ranges of any length, and its memory must not grow with them. The model server wants the
opposite (`services/whisper_gpu/__main__.py`); the orchestrator keeps malloc's defaults."""

from shared.heap import bound_heap

bound_heap()
