"""Application wiring: settings, the runtime that builds components lazily, the assistant,
the conversation service both front ends share, and the answers made without an index."""
