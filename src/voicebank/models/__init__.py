"""The three models conditioning needs, each a plain ``torch.nn.Module`` built from checkpoint tensors:

* :mod:`.voice_encoder` -- the 256-d speaker embedding (T3's ``speaker_emb``);
* :mod:`.speech_tokenizer` -- the S3 speech tokenizer (25 tokens per second);
* :mod:`.campplus` -- the CAM++ 192-d x-vector (S3Gen's ``embedding``);
* :mod:`.weights` -- finding checkpoints, reading only the tensors needed, strict loading, fingerprints.

Nothing is imported here: each module is imported where it is used (torch is heavy).
"""
