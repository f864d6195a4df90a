"""The chunk worker. Importing it bounds the process's heap (`shared.heap`): a worker streams
ranges of any length, and its memory must not grow with them. The model server and the
orchestrator keep malloc's defaults: their large buffers are reused at once, and a fixed
mmap threshold would make each one a fresh mapping."""

from shared.heap import bound_heap

bound_heap()
