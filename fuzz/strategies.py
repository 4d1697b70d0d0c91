"""Hypothesis strategies for the fuzz targets (fuzz.targets): plain, picklable cases that shrink well."""
from __future__ import annotations

import json

from hypothesis import strategies as st

from rawedge.types import BAYER_PATTERNS

MUTATION_KINDS = ("flip", "set", "truncate", "insert", "delete", "repeat")
mutations = st.lists(st.tuples(st.sampled_from(MUTATION_KINDS), st.floats(0, 1), st.integers(0, 255),
                               st.integers(1, 64)), max_size=6)

# --- photo ---------------------------------------------------------------------------------------------
EXIF_TAGS = [("0", 271), ("0", 272), ("0", 274), ("0", 306), ("exif", 33434), ("exif", 33437),
             ("exif", 34855), ("exif", 37386), ("exif", 36867), ("0", 33434), ("exif", 271)]
U32 = 2**32 - 1
exif_values = st.one_of(
    st.tuples(st.just("rational"), st.integers(0, U32), st.integers(0, U32)),  # zero denominators included
    st.tuples(st.just("rational"), st.sampled_from([0, 1, 10, U32]), st.sampled_from([0, 1, 3, U32])),
    st.integers(-(2**31), U32), st.sampled_from([0, 1, 8, 9, 65535, 65536, U32, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24), st.binary(max_size=24), st.sampled_from(["Canon", "Nikon™ é", "", "\x00", "2021:13:45 99:99:99"]),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)), st.tuples(), st.tuples(st.integers(0, 9)),
)
photo_cases = st.fixed_dictionaries({
    "fmt": st.sampled_from(["jpg", "png", "tif", "tif16"]),
    "tags": st.dictionaries(st.sampled_from(EXIF_TAGS), exif_values, max_size=6),
    "ops": mutations,
})


# --- RAW -----------------------------------------------------------------------------------------------
def raw_cases(sources: list[str]):
    return st.fixed_dictionaries({"source": st.sampled_from(sources),
                                  "ops": st.lists(st.tuples(st.sampled_from(MUTATION_KINDS), st.floats(0, 1),
                                                            st.integers(0, 255), st.integers(1, 64)),
                                                  min_size=1, max_size=8)})


# --- exported model files ----------------------------------------------------------------------------------
model_cases = st.fixed_dictionaries({"ops": st.lists(st.tuples(st.sampled_from(MUTATION_KINDS), st.floats(0, 1),
                                                                st.integers(0, 255), st.integers(1, 64)),
                                                      min_size=1, max_size=4)})


# --- DNG -----------------------------------------------------------------------------------------------
camera_names = st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,20}[A-Za-z0-9]", fullmatch=True)
dates = st.none() | st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")).filter(lambda s: len(s) == 19)


@st.composite
def invertible_matrices(draw):
    import numpy as np

    m = draw(st.lists(st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3), min_size=3, max_size=3))
    if abs(np.linalg.det(np.round(np.asarray(m), 4))) < 1e-2:
        m = (np.eye(3) + np.asarray(m) * 0.01).tolist()
    return [[round(v, 4) for v in row] for row in m]


@st.composite
def dng_cases(draw):
    white = draw(st.sampled_from([255, 1023, 4095, 16383, 65535]) | st.integers(2, 65535))
    black = draw(st.lists(st.integers(0, min(white - 1, 4096)), min_size=4, max_size=4))
    return {
        "h": draw(st.integers(22, 40)), "w": draw(st.integers(22, 40)),  # LibRaw opens nothing under 22x22
        "cfa": draw(st.sampled_from(BAYER_PATTERNS)), "white": white, "black": black,
        "seed": draw(st.integers(0, U32)),
        # LibRaw drops an as-shot white balance whose gains differ more than ~100x; real ones stay under 10x
        "neutral": [draw(st.floats(0.125, 8)), draw(st.sampled_from([1.0, 0.5, 2.0])), draw(st.floats(0.125, 8))],
        "matrix": draw(st.none() | invertible_matrices()),
        "aspect": draw(st.sampled_from([1.0, 0.5, 2.0]) | st.floats(0.25, 4)),
        "make": draw(camera_names), "model": draw(camera_names),
        "exif": {
            "exposure_time": draw(st.none() | st.floats(1e-5, 60)),
            "iso": draw(st.none() | st.integers(1, 65535).map(float)),
            "f_number": draw(st.none() | st.floats(0.5, 64)),
            "focal_length": draw(st.none() | st.floats(1, 2000)),
            "orientation": draw(st.none() | st.integers(1, 8)),
            "datetime": draw(dates),
        },
    }


# --- JSON documents (model metadata, camera profiles) -------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def perturbed(draw, base):
    """``base`` with a few changes at random places: a value replaced, a key dropped or added."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 4))):
        node, steps = doc, draw(st.integers(0, 3))
        for _ in range(steps):
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
                if isinstance(node, list) else []
            containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
            if not containers:
                break
            node = draw(st.sampled_from(containers))[1]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if action == "drop":
                del node[key]
            elif action == "replace":
                node[key] = draw(json_values)
            else:
                node[draw(st.text(max_size=10))] = draw(json_values)
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if action == "drop":
                del node[i]
            else:
                node[i] = draw(json_values)
    return doc


def json_texts(base):
    """Text of: a perturbed ``base`` (mostly), any JSON value, or ``base`` with its characters mutated."""
    valid = json.dumps(base)
    return st.one_of(
        perturbed(base).map(json.dumps),
        perturbed(base).map(json.dumps),
        json_values.map(json.dumps),
        st.builds(lambda ops: _mutate_text(valid, ops), mutations),
        st.builds(lambda ops: _mutate_bytes(valid, ops), mutations),  # as read from a damaged file
        st.text(max_size=40),
    )


def _mutate_bytes(text: str, ops) -> bytes:
    from fuzz.targets import mutate

    return mutate(text.encode(), ops)


def _mutate_text(text: str, ops) -> str:
    from fuzz.targets import mutate

    return mutate(text.encode(), ops).decode("utf-8", "replace")


def meta_base() -> dict:
    """A realistic exported model's metadata (every field set, as `rawedge export` writes them)."""
    from rawedge.metadata.schema import ModelMeta
    from rawedge.types import CameraProfile

    meta = ModelMeta(
        model_name="unet", config={"width": 4, "depth": 2}, align=8, tile=256, overlap=32, outputs=["raw", "raw_oe", "raw_noe"],
        camera_profiles=[CameraProfile.generic().to_dict()], exif_facts={"log_iso_mean": 5.5},
        recipe={"name": "fuzz"}, metrics={"receptive_field": {"support_px": 40, "mass_fraction": 0.999, "margin_px": 16},
                                          "val_psnr": 40.1},
        weights_sha256="ab" * 32, onnx_weights_sha256="cd" * 32, rawedge_version="0.1.0",
        parity={"checked": True, "photo": "boxes.jpg", "profile": "generic", "precision": "fp32",
                "tolerance": {"max_abs": 1e-3, "min_psnr_db": 60.0},
                "backends": {"onnxruntime": {"backend": "onnxruntime 1.20", "max_abs": 1e-6, "min_psnr_db": 100.0,
                                             "cases": [{"case": "tile", "shape": [1, 3, 64, 64], "max_abs": 1e-6,
                                                        "psnr_db": 100.0}]}}},
        fusion={"threshold": 0.97, "mode": "luma", "feather_radius": 4, "outputs": {"oe": "raw_oe", "noe": "raw_noe"}},
        calibration={"runtime": "ort", "method": "minmax"}, static_tile=None)
    return json.loads(meta.to_json())


def profile_base() -> dict:
    from rawedge.profiles import bundled_profiles

    profiles = bundled_profiles()
    return profiles["Canon PowerShot S40"].to_dict() if "Canon PowerShot S40" in profiles else {"name": "generic"}


# --- command lines -------------------------------------------------------------------------------------------
# @name: a file of the worker's pool (fuzz.targets.cli_pool), fresh for every case. The exported model
# (@model.onnx, and the same with changed weights) is offered only to `infer` and `info`: with a real model,
# `calibrate` or `bench` legitimately run for minutes, which a time bound would report as a hang.
FILES = ["@photo.jpg", "@photo.png", "@gray.png", "@broken.jpg", "@empty.jpg", "@notes.txt", "@camera.kdc",
         "@profile.json", "@bad.json", "@broken.onnx", "@nometa.onnx", "@model.pt", "@recipe.yaml", "@photos",
         "@empty", "@raws", "@missing.jpg", "@missing/x.dng", "@out.dng", "@out", "@out.jpg", "@out.json",
         "@out.onnx", "-", ""]
MODELS = ["@model.onnx", "@tampered.onnx"]
WITH_MODEL = {"infer", "info"}
# Options that count work: kept small, so that a case is slow only when rawedge is.
COUNTS = {"--synthetic", "--renders", "--steps", "--epochs", "--entries", "--max-tiles", "--repeat", "--max-images",
          "--kmeans", "--train-encoder-steps", "--batch", "--group-size", "--max-keep"}
numbers = st.sampled_from(["-1", "0", "1", "2", "3", "7", "8", "31", "32", "257", "4096", str(2**31), str(2**63),
                           "1e3", "x", ""]) | st.integers(-1000, 10000).map(str)
floats = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "0.5", "1", "1e308", "x", ""]) | \
    st.floats(-10, 100).map(lambda v: f"{v:g}")
texts = st.sampled_from(["unet", "analytic", "paramisp", "generic", "Canon PowerShot S40", "No Such Camera", "12mp",
                         "0.01mp", "64x48", "ort", "ort,openvino", "fp32,int8", "cpu", "cuda", "a=1", "{}",
                         "x" * 300]) | st.text(max_size=12)
junk = st.sampled_from(["--nope", "-x", "--", "-", "--help", "-h", "--version", "=", "--model="]) | \
    st.text(max_size=8)


def _command_table():
    """{command path: [params]} for every rawedge command and subcommand."""
    import click

    from rawedge.cli import main

    ctx = click.Context(main)
    table = {}
    for name in main.list_commands(ctx):
        cmd = main.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            for sub_name, sub in cmd.commands.items():
                table[(name, sub_name)] = sub.params
            table[(name,)] = []
        else:
            table[(name,)] = cmd.params
    return table


def _value(draw, command: tuple, param, option: str | None):
    import click

    kind = param.type
    files = FILES + (MODELS if command[0] in WITH_MODEL else [])
    odd = draw(st.integers(0, 7)) == 0  # mostly well-typed values, so that cases get past click to rawedge
    if isinstance(kind, click.Choice):
        return draw(texts if odd else st.sampled_from(list(kind.choices)))
    if isinstance(kind, click.Path):
        return draw(texts if odd else st.sampled_from(files))
    if isinstance(kind, (click.types.IntParamType, click.IntRange)):
        if option in COUNTS:
            return draw(st.sampled_from(["-1", "0", "1", "2", "3", "x"]))
        return draw(numbers)
    if isinstance(kind, (click.types.FloatParamType, click.FloatRange)):
        return draw(floats)
    return draw(st.sampled_from(files) if odd else texts)


@st.composite
def cli_cases(draw):
    import click

    table = _command_table()
    command = draw(st.sampled_from(sorted(table)))
    args = list(command)
    params = table[command]
    chosen = draw(st.lists(st.sampled_from(params), max_size=6, unique_by=id)) if params else []
    for param in params:  # required ones mostly present, so cases get past click to rawedge
        if param.required and param not in chosen and draw(st.integers(0, 9)):
            chosen.append(param)
    for param in chosen:
        if isinstance(param, click.Argument):
            n = param.nargs if param.nargs > 0 else draw(st.integers(1, 3))
            args += [_value(draw, command, param, None) for _ in range(n)]
        elif param.is_flag:
            args.append(draw(st.sampled_from(list(param.opts) + list(param.secondary_opts))))
        else:
            option = draw(st.sampled_from(list(param.opts)))
            args += [option, _value(draw, command, param, option)]
    if command == ("bench",):  # bench spawns one process per backend; fuzz its parsing, not benchmarks
        args += ["--model", "@missing.onnx"]
    if draw(st.integers(0, 9)) == 0:
        args.insert(draw(st.integers(0, len(args))), draw(junk))
    # A real command line cannot hold NUL (argv entries are C strings); click's CliRunner can.
    return {"args": [a.replace("\x00", "") for a in args]}
