"""Model importers.  onnx is imported lazily inside :func:`fxp.frontends.onnx_import.load_onnx`."""
