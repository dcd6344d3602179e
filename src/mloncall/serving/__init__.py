"""The data plane: the inference app, ONNX Runtime predictors, the router, prediction logging and metrics."""
