"""Reproduce soundalike's musicnn model file and its reference fixture from the public PyPI wheel.

The ``style`` aspect (``soundalike.features.style``) runs the musicnn MSD model (Pons & Serra, ISC
licence) with onnxruntime. This script makes everything it ships, from ``musicnn`` 0.1.0 on PyPI, in
a scratch virtualenv that is never part of the project (TensorFlow is needed here only)::

    python3.11 -m venv /tmp/musicnn-venv
    /tmp/musicnn-venv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/musicnn-venv/bin/pip install 'tensorflow-cpu==2.15.*' tf2onnx==1.17.0 'onnx==1.16.2' \
        librosa==0.11.0 soundfile 'numpy<2'
    /tmp/musicnn-venv/bin/pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn-wheel
    PYTHONPATH=src /tmp/musicnn-venv/bin/python tools/convert_musicnn.py model \
        --wheel /tmp/musicnn-wheel/musicnn-0.1.0-py3-none-any.whl
    PYTHONPATH=src /tmp/musicnn-venv/bin/python tools/convert_musicnn.py fixture \
        --dev-music ../shared/dev-music

``model`` restores the MSD_musicnn checkpoint into musicnn's own graph (``musicnn.models``) with
``is_training=False``, freezes it with two outputs, the penultimate dense layer (``embedding``,
200-d, after its batch normalisation: what musicnn's extractor calls ``penultimate``) and the 50 tag
probabilities (``taggram``, sigmoid of the logits), converts it with tf2onnx (opset 13, dynamic
batch of patches), and writes ``src/soundalike/features/models/``: ``musicnn_msd.onnx``,
``LICENSE-musicnn.txt`` (the wheel's ISC licence), ``musicnn_msd.json`` (provenance and the
sha256 that ``style.py`` checks on load; update ``MODEL_SHA256`` there when it changes) and
``musicnn_mel.npz`` (librosa's 96-band mel bank at 16 kHz, n_fft 512, as musicnn's
preprocessing builds it, so the analysis never imports librosa).

``model`` gives the same bytes on every run (tf2onnx's optimisers are made deterministic, and nodes
are numbered in a canonical order); with these versions the sha256 is the one in ``style.py``.

``fixture`` runs the *reference implementation* (musicnn's ``extractor.batch_data``: librosa
decoding and resampling to 16 kHz and its mel spectrogram; then musicnn's TensorFlow graph, as
``extractor.extractor`` runs it, but not its per-patch ``penultimate``, which in musicnn 0.1.0
repeats the first patch's for every patch) on three dev-music clips and two synthesised clips (``soundalike.synth``, rendered at 22,050 Hz and written as float WAV, so the
test can render the same samples again), and writes its per-patch outputs (non-overlapping 3-s
patches from the start, as the extractor cuts them) to ``tests/features/fixtures/musicnn_reference.npz``.
It also keeps the reference's own input patches for the first two patches of the first synthesised
clip, so the ONNX model can be compared with TensorFlow on identical input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "soundalike" / "features" / "models"
FIXTURE = ROOT / "tests" / "features" / "fixtures" / "musicnn_reference.npz"

MODEL = "MSD_musicnn"
N_FRAMES = 187  # musicnn's 3-s patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
N_MELS = 96
INPUT, EMBEDDING, TAGGRAM = "mel", "embedding", "taggram"
OPSET = 13

DEV_MUSIC_CLIPS = ("flare-game/battle_theme.ogg", "hedgewars-data/Art.ogg", "openclonk-data/Cavern.ogg")
# (instrument, groove, key, duration s, seed) of the synthesised clips; the test renders them again.
SYNTH_CLIPS = (("pluck", "backbeat", "C", 12.0, 1), ("pad", "waltz", "A", 12.0, 2))
SYNTH_RATE = 22050


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _musicnn_dir() -> Path:
    import musicnn

    return Path(musicnn.__file__).resolve().parent


def _frozen_graph():  # -> tf.compat.v1.GraphDef
    """musicnn's MSD graph with the checkpoint's weights folded in, inference mode, two outputs."""
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from musicnn import models

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, N_MELS], name=INPUT)
        # The same scope as musicnn.extractor, so the checkpoint's variable names match.
        with tf.name_scope("model"):
            logits, *_, penultimate = models.define_model(x, False, MODEL, 50)
        tf.identity(penultimate, name=EMBEDDING)
        tf.identity(tf.nn.sigmoid(logits), name=TAGGRAM)
        with tf.compat.v1.Session(graph=graph) as sess:
            tf.compat.v1.train.Saver().restore(sess, str(_musicnn_dir() / MODEL) + "/")
            return tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [EMBEDDING, TAGGRAM]
            )


def _rename(model, old: str, new: str) -> None:
    """Rename a tensor of an ONNX graph (tf2onnx keeps TensorFlow's ``name:0``)."""
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _canonical(model) -> None:
    """Number nodes, tensors and initialisers in one deterministic topological order.

    tf2onnx's optimiser names and orders some nodes differently from run to run (it walks sets), so
    the same conversion gives files that compute the same thing but differ in bytes. Renaming
    everything in an order fixed by the graph's content makes the file reproducible byte for byte.
    """
    graph = model.graph
    keep = {v.name for v in [*graph.input, *graph.output]}
    inits = {t.name: t for t in graph.initializer}
    names: dict[str, str] = {n: n for n in keep}
    produced = {o for node in graph.node for o in node.output}

    def name_of(tensor: str) -> str:
        if tensor not in names:
            names[tensor] = f"c{len(names)}" if tensor in inits else f"t{len(names)}"
        return names[tensor]

    def key(node) -> tuple:
        attrs = b"".join(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name))
        consts = [inits[i].SerializeToString() if i in inits else b"" for i in node.input]
        return (node.op_type, [names.get(i, "") for i in node.input], consts, attrs)

    ready_inputs = {v.name for v in graph.input} | set(inits) | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in ready_inputs or i not in produced for i in n.input)]
        if not ready:
            raise RuntimeError("the ONNX graph has a cycle")
        node = min(ready, key=key)
        pending.remove(node)
        for i in node.input:
            name_of(i)
        for o in node.output:
            name_of(o)
            ready_inputs.add(o)
        ordered.append(node)
    for k, node in enumerate(ordered):
        node.name = f"{node.op_type}_{k}"
        node.input[:] = [names[i] if i else i for i in node.input]
        node.output[:] = [names[o] for o in node.output]
    used = sorted((names[n], t) for n, t in inits.items() if n in names)
    for new, tensor in used:
        tensor.name = new
    del graph.node[:]
    graph.node.extend(ordered)
    copies = [type(t)() for _, t in used]
    for copy, (_, tensor) in zip(copies, used, strict=True):
        copy.CopyFrom(tensor)
    del graph.initializer[:]
    graph.initializer.extend(copies)


def mel_bank() -> None:
    """Write musicnn's mel filter bank (librosa's, as its melspectrogram builds it) as package data."""
    import librosa
    import numpy as np

    bank = librosa.filters.mel(sr=16000, n_fft=512, n_mels=N_MELS)
    out = MODELS / "musicnn_mel.npz"
    np.savez_compressed(out, mel=bank, librosa_version=np.str_(librosa.__version__))
    print(f"wrote {out} ({out.stat().st_size} bytes) from librosa {librosa.__version__}")


def _deterministic_tf2onnx() -> None:
    """Make tf2onnx's optimisers walk their sets in the same order on every run.

    They keep graph nodes in sets, which iterate in the order of the nodes' memory addresses, so the
    transpose optimiser pushes transposes differently from run to run (files that compute the same
    but differ in bytes). Hashing a node by its name (names are made by a counter) fixes the order;
    ``PYTHONHASHSEED=0`` (set by ``main``) fixes it for sets of names.
    """
    import zlib

    from tf2onnx.graph import Node

    Node.__hash__ = lambda self: zlib.crc32(self.name.encode())  # type: ignore[method-assign]


def convert(wheel: Path) -> None:
    import numpy as np
    import onnx
    import tensorflow as tf
    import tf2onnx

    _deterministic_tf2onnx()

    graph_def = _frozen_graph()
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[f"{INPUT}:0"],
        output_names=[f"{EMBEDDING}:0", f"{TAGGRAM}:0"],
        opset=OPSET,
    )
    for name in (INPUT, EMBEDDING, TAGGRAM):
        _rename(model, f"{name}:0", name)
    _canonical(model)
    model.doc_string = f"musicnn {MODEL} (musicnn 0.1.0, ISC licence), converted by tools/convert_musicnn.py"
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    MODELS.mkdir(parents=True, exist_ok=True)
    out = MODELS / "musicnn_msd.onnx"
    out.write_bytes(model.SerializeToString())

    licence = _musicnn_dir().parent / "musicnn-0.1.0.dist-info" / "LICENSE.md"
    (MODELS / "LICENSE-musicnn.txt").write_text(
        "The model file musicnn_msd.onnx beside this licence is converted from the MSD_musicnn\n"
        "checkpoint of musicnn 0.1.0 (https://pypi.org/project/musicnn/0.1.0/,\n"
        "https://github.com/jordipons/musicnn), distributed under the ISC licence:\n\n"
        + licence.read_text()
    )
    provenance = {
        "file": out.name,
        "sha256": _sha256(out),
        "bytes": out.stat().st_size,
        "source": {
            "package": "musicnn",
            "version": "0.1.0",
            "wheel": wheel.name,
            "wheel_sha256": _sha256(wheel),
            "checkpoint": f"musicnn/{MODEL}/",
            "licence": "ISC",
        },
        "inputs": {INPUT: f"float32 [n, {N_FRAMES}, {N_MELS}]: log10(1 + 10000 * mel power) patches"},
        "outputs": {
            EMBEDDING: "float32 [n, 200]: penultimate dense layer after batch normalisation",
            TAGGRAM: "float32 [n, 50]: tag probabilities, musicnn.configuration.MSD_LABELS",
        },
        "converted_with": {
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "opset": OPSET,
        },
        "script": "tools/convert_musicnn.py",
    }
    (MODELS / "musicnn_msd.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {provenance['sha256']})")


def _reference(path: Path):  # -> (mel patches [n, 187, 96], embeddings [n, 200], taggram [n, 50])
    """musicnn's extractor on one file, minus its bug, with the input patches it fed to the model.

    ``musicnn.extractor.extractor`` 0.1.0 returns the *first* patch's ``penultimate`` for every
    patch (its loop concatenates the first batch's value again), so this runs the same steps:
    ``batch_data`` (librosa load at 16 kHz, mel, float16, log10(1 + 10000 x), 187-frame patches
    without overlap) and the same graph in a TF1 session with ``is_training`` fed False.
    """
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from musicnn import models
    from musicnn.extractor import batch_data

    batch, _ = batch_data(str(path), N_FRAMES, N_FRAMES)
    graph = tf.Graph()
    with graph.as_default():
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            logits, *_, penultimate = models.define_model(x, is_training, MODEL, 50)
            tags = tf.nn.sigmoid(logits)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().restore(sess, str(_musicnn_dir() / MODEL) + "/")
            embeddings, taggram = sess.run([penultimate, tags], feed_dict={x: batch, is_training: False})
    return batch.astype(np.float32), embeddings.astype(np.float32), taggram.astype(np.float32)


def fixture(dev_music: Path) -> None:
    import librosa
    import numpy as np
    import soundfile as sf

    from soundalike import synth

    arrays: dict[str, np.ndarray] = {}
    names: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        sources: list[tuple[str, Path]] = [(f"dev-music/{c}", dev_music / c) for c in DEV_MUSIC_CLIPS]
        for instrument, groove, key, duration, seed in SYNTH_CLIPS:
            spec = synth.TrackSpec(instrument, groove, key, duration=duration, seed=seed)
            wav = Path(tmp) / f"{spec.name}.wav"
            sf.write(wav, synth.render(spec, sample_rate=SYNTH_RATE), SYNTH_RATE, subtype="FLOAT")
            sources.append((f"synth/{spec.name}", wav))
        for i, (name, path) in enumerate(sources):
            batch, embeddings, taggram = _reference(path)
            arrays[f"embedding_{i}"], arrays[f"taggram_{i}"] = embeddings, taggram
            if i == len(DEV_MUSIC_CLIPS):
                arrays["mel_input"] = batch[:2]  # the reference's own input patches
            names.append(name)
            print(f"{name}: {len(embeddings)} patches")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        FIXTURE,
        names=np.array(names),
        synth_specs=np.array([list(map(str, s)) for s in SYNTH_CLIPS]),
        synth_rate=np.int64(SYNTH_RATE),
        librosa_version=np.str_(librosa.__version__),
        **arrays,
    )
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":  # string hashing must not vary between runs
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    model = sub.add_parser("model", help="write src/soundalike/features/models/musicnn_msd.onnx")
    model.add_argument("--wheel", type=Path, required=True, help="the musicnn-0.1.0 wheel (for its sha256)")
    fix = sub.add_parser("fixture", help="write tests/features/fixtures/musicnn_reference.npz")
    fix.add_argument("--dev-music", type=Path, default=ROOT.parent / "shared" / "dev-music")
    args = parser.parse_args()
    if args.mode == "model":
        convert(args.wheel)
        mel_bank()
    else:
        fixture(args.dev_music)


if __name__ == "__main__":
    main()
