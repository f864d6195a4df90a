"""Talking to media hosts: the one package that does, for every fetch of every service.

    addresses.py     AddressPolicy: which addresses a client-supplied URL may reach (SSRF guard)
    connections.py   media_client(), sync_media_client(): httpx clients whose every connection
                     (redirects included) goes through the guard: the host is resolved once, each
                     address checked, and the connection made to the checked address (no second
                     lookup, so DNS rebinding can't slip past); TLS verified against
                     $SSL_CERT_FILE or certifi's roots; no environment proxies
    transport.py     httpx's transport interface over an httpcore pool we build ourselves
                     (the guard is its network backend): no private attribute of httpx
    deadline.py      Deadline: one time limit for a whole check: every read of a `MediaFile` and
                     of its client's connections waits at most the time left
    media_file.py    MediaFile: a seekable file over range requests, for PyAV (which then never
                     opens a URL itself; FFmpeg reads through the chunk worker's range proxy)
    failures.py      transfer_retries(): a transfer the host cut (reset, closed early, refused)
                     is tried again after 0, 1 and 3 s (`shared.retries`, the schedule of every
                     transfer; the chunk worker's range proxy resumes its runs on it too).
                     status_error(), transport_error(): a host's answer or failure as the
                     service's error, with one wording (a host that went silent past the
                     timeout is a 504)

Nothing outside this package opens a connection to a media host; import from the package.
"""

from shared.media_host.addresses import AddressPolicy, MediaAddressRefusedError
from shared.media_host.connections import check_destination, media_client, sync_media_client
from shared.media_host.deadline import Deadline
from shared.media_host.failures import status_error, transfer_retries, transport_error
from shared.media_host.media_file import MediaFile

__all__ = [
    "AddressPolicy",
    "Deadline",
    "MediaAddressRefusedError",
    "MediaFile",
    "check_destination",
    "media_client",
    "status_error",
    "sync_media_client",
    "transfer_retries",
    "transport_error",
]
