"""The public API: routes for our JSON and Server-Sent Events, OpenAI's audio API, async jobs
and the page; the gate in front of them (Host, key, type, size) and the request intake.
Routes are thin: the work is `transcription` (one job, start to end) and `jobs` (the queue)."""
