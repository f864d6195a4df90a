"""The three services. Importing the package caps OpenBLAS at one thread in every service process
(`python -m services.<name>` imports it before numpy, which is when OpenBLAS reads the cap).

Why: the services' numpy work is small matrices (log-mel features, fbank, VAD, cut search) next
to compute that already owns the cores (CTranslate2, onnxruntime). OpenBLAS's own pool gains
nothing there and its threads busy-wait ~0.1 s after every call: measured, one 30 s log-mel
call costs 10 ms and then burns 0.1 s of a second core, taken from the model's threads; a chunk
worker once stalled for minutes in OpenBLAS's thread hand-off with both cores busy. An operator's
own OPENBLAS_NUM_THREADS wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
