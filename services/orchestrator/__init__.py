"""The orchestrator: the public API, in front of the chunk workers.

    api/            routes (ours, OpenAI's, async jobs, the page), the gate, request intake
      │
      ├─> jobs/     the job service: store + migrations, queue, event watch, webhooks, uploads
      │     │
      └─────┴─> transcription/   one job: probe, plan, fan out (runner), merge, speakers

`app.py` wires them (`create_app`), `config.py` is their one Settings class.
"""
