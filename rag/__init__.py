"""The answer engine: embeddings, stores, lexical index, fusion, classification, LLM, evaluation.

Never imports Flask or ``plugin``: the composition root hands it an :class:`rag.engine.EngineConfig`.
"""
