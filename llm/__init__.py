"""Language-model backends behind one protocol: the embedded model, a vLLM server, and the
manager that installs and starts the server."""
