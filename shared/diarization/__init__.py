"""Offline speaker diarization: who spoke when, without torch or a model hub.

Models (weights.py fetches and converts them once; models.py runs them with onnxruntime):
pyannote segmentation-3.0 finds up to three voices per 10 s window, CAM++ (campplus.py, on
fbank.py's features) embeds each voice. The pipeline modules build local speakers per micro
chunk and cluster them once per job.
"""
