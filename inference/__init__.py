"""Scoring with one model version: the Predictor (predictor.py) and occlusion explanations (explain.py)."""

#: The runtimes a Predictor can run a version with; imported without numpy by the service settings.
RUNTIMES = ("onnx", "savedmodel")
