"""The upstream side of the benchmarks: runs under the *upstream* Python (chatterbox-tts 0.1.7).

Never imported by voicebank; the benchmark scripts start it as a child process::

    $UPSTREAM_PYTHON benchmarks/_upstream_worker.py TASK --json-out FILE [options]

Tasks (each writes one JSON object to ``--json-out``):

* ``build-weights``: a full-size checkpoint directory of random weights of the real shapes (``ve.safetensors``,
  ``t3_cfg.safetensors``, ``s3gen.safetensors`` with ``flow.*`` and ``mel2wav.*``, ``tokenizer.json``), whose
  tokenizer, speaker-encoder and voice-encoder tensors are the golden ones (``tests/golden_weights.py``);
* ``cold``: ``ChatterboxTTS.from_local`` + ``prepare_conditionals`` + ``conds.save`` (the process is the
  measurement: the parent times it and reads its peak RSS);
* ``serve``: answers timing requests (one JSON object per line on stdin and stdout) so that the benchmark
  can alternate upstream and voicebank measurements: ``models`` (build the models), ``prepare`` (one
  ``prepare_conditionals``, ``set_target_voice`` for VC), ``loop`` (a loop of them), ``ve`` and ``embed``
  (speaker embeddings of clips loaded as ``prepare_conditionals`` loads them, one ``embeds_from_wavs`` call),
  ``load`` (``Conditionals.load(path).to(device)`` times);
* ``memory``: the RSS cost of keeping N loaded voices.

Only the upstream modules that conditioning runs are timed; for the variants other than English the
T3 model (which conditioning never touches) is replaced by an object that carries its prompt length.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup_torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


# --- build-weights -------------------------------------------------------------------------------------


def build_weights(args: argparse.Namespace) -> dict:
    """Write a checkpoint directory of the real shapes; conditioning tensors are the golden ones."""
    torch = _setup_torch(args.threads)
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(Path(args.repo) / "tests"))
    from golden_weights import write_golden_weights

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    golden_dir = out / ".golden"
    write_golden_weights(golden_dir)
    golden_ve = load_file(str(golden_dir / "ve.safetensors"))
    golden_s3 = load_file(str(golden_dir / "s3gen.safetensors"))

    torch.manual_seed(0)
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder

    # ve: every tensor is golden
    ve = VoiceEncoder()
    ve.load_state_dict(golden_ve)
    save_file({k: v.contiguous() for k, v in ve.state_dict().items()}, str(out / "ve.safetensors"))
    del ve

    # s3gen: flow.* and mel2wav.* random (upstream's own initialisation), tokenizer.* and speaker_encoder.* golden
    s3gen = S3Gen()
    state = {k: v for k, v in s3gen.state_dict().items()
             if not k.startswith(("tokenizer._mel_filters", "tokenizer.window"))}
    missing = sorted(k for k in golden_s3 if k not in state)
    if missing:
        raise SystemExit(f"golden keys not in upstream S3Gen: {missing[:5]}")
    state.update(golden_s3)
    seen: dict[int, str] = {}
    tensors = {}
    for k, v in state.items():
        v = v.detach().contiguous()
        if v.data_ptr() in seen:  # safetensors refuses shared storage
            v = v.clone()
        seen[v.data_ptr()] = k
        tensors[k] = v
    save_file(tensors, str(out / "s3gen.safetensors"))
    n_s3 = sum(v.numel() for v in tensors.values())
    del s3gen, state, tensors
    gc.collect()

    # t3: random (conditioning never runs it; from_local needs it)
    t3 = T3()
    t3_state = {k: v.detach().contiguous() for k, v in t3.state_dict().items()}
    seen = {}
    for k, v in list(t3_state.items()):
        if v.data_ptr() in seen:
            t3_state[k] = v.clone()
        seen[t3_state[k].data_ptr()] = k
    save_file(t3_state, str(out / "t3_cfg.safetensors"))
    n_t3 = sum(v.numel() for v in t3_state.values())
    del t3, t3_state
    gc.collect()

    # tokenizer.json: a tiny word-level vocabulary with the special tokens EnTokenizer checks for
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]",
                                         "[MASK]", *"abcdefghijklmnopqrstuvwxyz'.,?!"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.save(str(out / "tokenizer.json"))

    for p in golden_dir.iterdir():
        p.unlink()
    golden_dir.rmdir()
    (out / "COMPLETE").write_text("random weights of the real shapes; conditioning tensors from "
                                  "tests/golden_weights.py\n")
    return {"dir": str(out), "s3gen_params": n_s3, "t3_params": n_t3,
            "files": {p.name: p.stat().st_size for p in out.iterdir()}}


# --- cold ----------------------------------------------------------------------------------------------


def cold(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    torch = _setup_torch(args.threads)
    from chatterbox.tts import ChatterboxTTS

    t_import = time.perf_counter() - t0
    model = ChatterboxTTS.from_local(args.ckpt, "cpu")
    t_load = time.perf_counter() - t0
    model.prepare_conditionals(args.clip, exaggeration=0.5)
    model.conds.save(Path(args.out))
    t_done = time.perf_counter() - t0
    return {"import_s": t_import, "loaded_s": t_load, "done_s": t_done, "peak_rss_mb": _peak_rss_mb(),
            "torch": torch.__version__}


# --- serve: measurements driven from the benchmark process, interleaved with voicebank's ---------------


def _models(ckpt: str):
    """English from ``from_local``; the other variants share its S3Gen and voice encoder."""
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS
    from chatterbox.tts import ChatterboxTTS
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    from chatterbox.vc import ChatterboxVC

    english = ChatterboxTTS.from_local(ckpt, "cpu")
    s3gen, ve = english.s3gen, english.ve

    def stub(cls, plen: int):
        obj = cls.__new__(cls)
        obj.sr, obj.s3gen, obj.ve, obj.device, obj.conds = 24000, s3gen, ve, "cpu", None
        obj.t3 = SimpleNamespace(hp=SimpleNamespace(speech_cond_prompt_len=plen))
        obj.tokenizer = None
        return obj

    return {"english": english, "multilingual": stub(ChatterboxMultilingualTTS, 150),
            "turbo": stub(ChatterboxTurboTTS, 375), "vc": ChatterboxVC(s3gen, "cpu")}


def _prepare(model, variant: str, clip: str) -> None:
    if variant == "vc":
        model.set_target_voice(clip)
    else:
        model.prepare_conditionals(clip, exaggeration=0.5)


class Server:
    """Answers one JSON request per line on stdin with one JSON line on the original stdout."""

    def __init__(self, threads: int) -> None:
        self.torch = _setup_torch(threads)
        self.models: dict | None = None
        self.ve = None

    def op_models(self, ckpt: str) -> dict:
        t = time.perf_counter()
        self.models = _models(ckpt)
        return {"seconds": time.perf_counter() - t, "torch": self.torch.__version__}

    def op_prepare(self, variant: str, clip: str) -> dict:
        assert self.models is not None
        with self.torch.inference_mode():
            t = time.perf_counter()
            _prepare(self.models[variant], variant, clip)
            return {"seconds": time.perf_counter() - t}

    def op_loop(self, variant: str, clips: list[str]) -> dict:
        assert self.models is not None
        with self.torch.inference_mode():
            t = time.perf_counter()
            for c in clips:
                _prepare(self.models[variant], variant, c)
            return {"seconds": time.perf_counter() - t}

    def op_ve(self, ckpt: str) -> dict:
        from chatterbox.models.voice_encoder import VoiceEncoder
        from safetensors.torch import load_file

        self.ve = VoiceEncoder()
        self.ve.load_state_dict(load_file(str(Path(ckpt) / "ve.safetensors")))
        self.ve.eval()
        return {}

    def op_embed(self, clips: list[str]) -> dict:
        """Load each clip as ``prepare_conditionals`` does, then one batched ``embeds_from_wavs``."""
        import librosa

        assert self.ve is not None
        t = time.perf_counter()
        wavs = []
        for c in clips:
            wav24, _ = librosa.load(c, sr=24000)
            wavs.append(librosa.resample(wav24, orig_sr=24000, target_sr=16000))
        emb = self.ve.embeds_from_wavs(wavs, sample_rate=16000)
        return {"seconds": time.perf_counter() - t, "n": int(emb.shape[0])}

    def op_load(self, path: str, repeat: int) -> dict:
        """``Conditionals.load(path).to("cpu")`` times."""
        from chatterbox.tts import Conditionals

        device = self.torch.device("cpu")
        out = []
        for _ in range(repeat):
            t = time.perf_counter()
            Conditionals.load(path).to(device)
            out.append(time.perf_counter() - t)
        return {"times": out}

    def run(self, out) -> None:
        out.write(json.dumps({"ready": True}) + "\n")
        out.flush()
        for line in sys.stdin:
            request = json.loads(line)
            op = request.pop("op")
            if op == "quit":
                break
            try:
                reply = getattr(self, f"op_{op}")(**request)
            except Exception as e:  # reported to the driver, which stops
                reply = {"error": f"{type(e).__name__}: {e}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()


def serve(args: argparse.Namespace) -> dict:
    # upstream prints to stdout (e.g. "loaded PerthNet"): keep the protocol on the original stdout only
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    Server(args.threads).run(protocol)
    return {"peak_rss_mb": _peak_rss_mb()}


# --- memory --------------------------------------------------------------------------------------------


def memory(args: argparse.Namespace) -> dict:
    """RSS cost of keeping ``--n-voices`` loaded copies of one voice (``Conditionals.load``)."""
    torch = _setup_torch(args.threads)
    from chatterbox.tts import Conditionals

    path = args.voice
    device = torch.device("cpu")
    conds = Conditionals.load(path)
    tensors = [*conds.t3.__dict__.values(), *conds.gen.values()]
    tensor_bytes = sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
    for _ in range(5):
        Conditionals.load(path).to(device)
    gc.collect()
    before = _rss_mb()
    kept = [Conditionals.load(path).to(device) for _ in range(args.n_voices)]
    gc.collect()
    after = _rss_mb()
    assert len(kept) == args.n_voices
    return {"tensor_bytes": tensor_bytes, "rss_delta_mb": after - before, "n_voices": args.n_voices,
            "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["build-weights", "cold", "serve", "memory"])
    p.add_argument("--json-out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--out")
    p.add_argument("--ckpt")
    p.add_argument("--clip")
    p.add_argument("--voice")
    p.add_argument("--n-voices", type=int, default=200)
    args = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    task = {"build-weights": build_weights, "cold": cold, "serve": serve, "memory": memory}[args.task]
    result = task(args)
    Path(args.json_out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
