"""The transcription path of one job: probe the media, plan its macro chunks, fan them out to
the chunk workers (`runner`), merge their results in timeline order, label the speakers.
Plain code over the shared schemas: no routes, no database."""
