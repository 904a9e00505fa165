#!/usr/bin/env bash
# Builds the upstream environment the benchmarks compare against (chatterbox-tts 0.1.7 + s3tokenizer 0.3.0,
# torch 2.9.1 + torchaudio 2.9.1; ~7.5 GB: the torch 2.9.1 wheel from PyPI is the CUDA build).  Usage:
#     benchmarks/upstream_env.sh DIR
#     python benchmarks/run_all.py --upstream-python DIR/bin/python
# These are the commands that worked on x86_64 / Python 3.11 (pip 23.2).
set -euo pipefail
REFENV=${1:?usage: upstream_env.sh DIR}
CB_WHEEL=${CB_WHEEL:-chatterbox-tts==0.1.7}

python3 -m venv "$REFENV"
P="$REFENV/bin/pip"
"$P" install torch==2.9.1
"$P" install torch==2.9.1 'torchaudio==2.9.*'                  # -> torchaudio 2.9.1
"$P" install --no-deps "$CB_WHEEL"                              # chatterbox-tts 0.1.7 (its pins: torch 2.6, gradio, ... skipped)
"$P" install 'numpy<2' librosa==0.11.0 safetensors==0.5.3 conformer==0.3.2 diffusers==0.29.0 \
    transformers==5.2.0 'resemble-perth>=1.0.0' omegaconf huggingface_hub pyloudnorm scipy soundfile \
    einops tqdm onnx torch==2.9.1 torchaudio==2.9.1
"$P" install --no-deps s3tokenizer==0.3.0                       # skips its 'pre-commit' dependency

# test audio tools (optional)
# apt-get update && apt-get install -y espeak-ng sox

"$REFENV/bin/python" - <<'EOF'
from chatterbox.tts import ChatterboxTTS, Conditionals
from chatterbox.tts_turbo import ChatterboxTurboTTS
from chatterbox.vc import ChatterboxVC
from chatterbox.mtl_tts import ChatterboxMultilingualTTS
import torch, torchaudio
print("imports OK; torch", torch.__version__, "torchaudio", torchaudio.__version__)
EOF
