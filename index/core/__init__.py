"""The bottom layer: what index time and query time both use.

The BM25 formulas, the sentence encoder and its ONNX Runtime session, the error hierarchy and
the shared types. It imports nothing from the rest of `index`, nor from `rankers` or `app`
(import-linter checks it in `make lint`).
"""
