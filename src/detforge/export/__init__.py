"""Export and optimisation: ONNX layouts, parity, quantisation, TensorRT engines."""
