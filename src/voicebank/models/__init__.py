"""The three models conditioning needs, each a plain ``torch.nn.Module`` built from checkpoint tensors:

* :mod:`.voice_encoder` -- the 256-d speaker embedding (T3's ``speaker_emb``);
* :mod:`.speech_tokenizer` -- the S3 speech tokenizer (25 tokens per second);
* :mod:`.campplus` -- the CAM++ 192-d x-vector (S3Gen's ``embedding``);
* :mod:`.checkpoints` -- finding checkpoints, reading only the tensors needed, fingerprints from file headers;
* :mod:`.building` -- a module skeleton on the meta device, and the checkpoint's tensors loaded into it strictly.

Nothing is imported here: each module is imported where it is used (torch is heavy).
"""
