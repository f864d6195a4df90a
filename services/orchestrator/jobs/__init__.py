"""The job service: async jobs kept in a database (`store`, its `migrations`), run by the
`queue` across restarts and replicas, followed through their event log (`event_watch`),
announced by `webhooks`; and the `uploads` every job's media may be (the media store)."""
