"""OpenAI speech-to-text (or any OpenAI-compatible server) behind the `Engine` protocol.

engine: the `Engine` itself (requests, the SDK call, reading the answer); models: what each
model answers and accepts; errors: SDK failures as engine errors; languages: Whisper's names.
"""
