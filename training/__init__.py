"""Training code for the embedded tiny-agent base: corpus, tokenizer, model, trainer, exporter.

Needs the ``train`` extra (torch, transformers, tokenizers); nothing at run time imports it.
"""
