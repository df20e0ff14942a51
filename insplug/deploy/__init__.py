"""Deployment: ONNX export (:mod:`insplug.deploy.onnx_export`)."""
