"""The embedded Triton: NVIDIA PyTriton serving the ONNX models found in a models directory."""
