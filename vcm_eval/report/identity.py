"""What else a run's results depend on beyond its pipeline parameters: its *identity*, one curve each.

A curve is the runs of one pipeline that differ only in a rate parameter. Two runs with the same
parameters can still come from different encoders (VVenC or VTM: the VVC config group), another
colour path, another encoder build, other network weights under the same model name, another
device or other code. A curve drawn through such runs mixes two methods and its BD-rate means
nothing, so every one of these settings splits curves (``run_identity``), and labels name the
ones that differ, as briefly as still tells the curves apart (``identity_labels``):
``image_anchor (VTM-23.13 AI)`` against ``image_anchor (VVenC medium)``.

The identity is what the run's key was made of (``provenance.json`` ``key``, written by
``vcm_eval.engine.run``): the config groups its codec reads (the VVC settings), the codec
version (encoder build, checkpoint hash, the codec's code revision), the network's fingerprint
(weights and feature code revision), the device kind and the evaluators' code revision. Runs
made before provenance recorded the key get the same fields rebuilt from ``config.yaml`` and
``provenance.json``, with the git commit standing in for the code revisions they lack.

One exception: a codec whose version follows the rate point by design (the fusion codec loads one
checkpoint per ``quality``) records another ``codec_version`` at every point. Those versions are
read as one curve when they are alike except for content hashes and the rate value itself
(``synthetic_maskrcnn_slim_q2.pt`` / ``..._q4.pt``) and each rate point has exactly one
(``bind_rate_versions``); any other difference (another VTM release, another FFmpeg build)
still splits the curve.

Everything here reads what ``vcm_eval.engine.run`` wrote; nothing imports a codec or torch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

# The VVC settings' config group: ``codec`` in runs made before the rename, ``vvc`` after it.
VVC_GROUPS = ("vvc", "codec")
# Key groups that are not identity: the pipeline's settings are the curve's parameters, the rest the setup.
NOT_IDENTITY_GROUPS = ("pipeline", "dataset", "model", "eval", "identity")
# For runs without a recorded key: the VVC settings their run key left out (thread count; the VTM
# files and the colour converter, whose versions are in ``codec_version``).
VVC_NOT_IDENTITY = ("threads", "vtm_encoder", "vtm_decoder", "vtm_cfg", "shipped", "colour_ffmpeg")
# The version text of a codec built on VVC (VTM's banner, FFmpeg's libvvenc, vvencapp).
_VVC_VERSION = re.compile(r"VTM-|vvenc", re.IGNORECASE)
# Content hashes inside version texts (``sha256:b5610a03...``, ``md5:8289282d...``).
_HASH = re.compile(r"\b(sha1|sha256|md5)[:=][0-9a-fA-F]+")
# The order labels name fields in (``x.*``: each setting of config group x), and the order of
# dropping them when the others already tell the curves apart (the codec version first: the
# encoder setting, ``VTM-23.13 AI``, usually says it shorter).
FIELDS = ("codec_version", "vvc.*", "*.*", "model_weights", "device", "*", "code")
_DROP_ORDER = ("codec_version", "vvc.backend", "vvc.*", "*.*", "*", "code", "device", "model_weights")


def vvc_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's VVC settings, from the ``vvc`` group or (runs made before the rename) ``codec``."""
    for group in VVC_GROUPS:
        node = config.get(group)
        if isinstance(node, Mapping) and node:
            return {str(k): v for k, v in node.items()}
    return {}


def uses_vvc(codec_version: str, has_codec: bool) -> bool:
    """For a run without a recorded key: whether the VVC settings can change its results.

    Known not to: a run without a codec (uncompressed) or one whose recorded codec version names
    no VVC encoder (quant, fusion). When the version was not recorded, the settings count: a
    split that was not needed is visible in the labels, a merge that was wrong is not.
    """
    if not has_codec:
        return False
    return not codec_version or bool(_VVC_VERSION.search(codec_version))


def _commits(provenance: Mapping[str, Any]) -> str:
    """The git commits of every session that wrote the run's records (a resumed run has several)."""
    sessions = [*provenance.get("history", []), provenance]
    commits = [str(s.get("git_commit", "")) for s in sessions if isinstance(s, Mapping) and s.get("git_commit")]
    return "+".join(dict.fromkeys(commits))


def _from_key(key: Mapping[str, Any], curve_version: str = "") -> dict[str, str]:
    """The identity a run's recorded key holds: every entry of ``key.identity`` and every group its codec reads.

    ``curve_version`` (``Codec.curve_version``, recorded beside the key) stands for the codec's
    version when the codec names what stays the same along its curve (one checkpoint per quality).
    """
    found = key["identity"]
    out = {"codec_version": curve_version or str(found.get("codec_version", ""))}
    for group, node in key.items():
        if group not in NOT_IDENTITY_GROUPS and isinstance(node, Mapping):
            name = "vvc" if group in VVC_GROUPS else str(group)
            out.update({f"{name}.{k}": str(v) for k, v in sorted(node.items())})
    out["model_weights"] = str(found.get("model", ""))
    out["device"] = str(found.get("device", "")).split(":", 1)[0]
    out.update({str(k): str(v) for k, v in found.items() if k not in ("codec_version", "model", "device")})
    return out


def run_identity(config: Mapping[str, Any], provenance: Mapping[str, Any], *, has_codec: bool) -> dict[str, str]:
    """Everything besides the pipeline parameters and the setup that a run's results depend on, as text.

    Args:
        config: the run's ``config.yaml`` as a dict.
        provenance: its ``provenance.json`` (``{}`` when missing: every field is then ``""``).
        has_codec: whether the pipeline codes anything (the run declared ``rate_params``); only
            read for runs made before provenance recorded the key.

    Returns:
        ``codec_version``; ``vvc.<setting>`` (the VVC settings, for codecs that read them);
        ``model_weights`` (fingerprint of the network); ``device`` (its kind: cpu, cuda); the code
        revisions the key records (``evaluators``); for runs without a key, ``code`` (the git
        commit of each session that wrote it) instead.
    """
    key = provenance.get("key")
    if isinstance(key, Mapping) and isinstance(key.get("identity"), Mapping):
        return _from_key(key, str(provenance.get("curve_version", "")))
    version = str(provenance.get("codec_version", ""))
    out: dict[str, str] = {"codec_version": version}
    if uses_vvc(version, has_codec):
        out.update({f"vvc.{k}": str(v) for k, v in sorted(vvc_settings(config).items()) if k not in VVC_NOT_IDENTITY})
    out["model_weights"] = str(provenance.get("model", ""))
    out["device"] = str(provenance.get("device", "")).split(":", 1)[0]
    out["code"] = _commits(provenance)
    return out


def _rate_free(version: str, rate_point: Mapping[str, Any]) -> str:
    """``version`` with content hashes and the rate parameters' values replaced by placeholders."""
    text = _HASH.sub(r"\1:<hash>", version)
    for name, value in rate_point.items():
        number = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        text = re.sub(rf"(?<![0-9.]){re.escape(number)}(?![0-9])", f"<{name}>", text)
    return text


def bind_rate_versions(
    identities: Sequence[dict[str, str]], curve_keys: Sequence[Hashable], rate_points: Sequence[dict[str, Any]]
) -> None:
    """Merge the codec versions that follow the rate point (one checkpoint per quality), in place.

    Within the runs that share a curve key (pipeline and non-rate parameters) and every identity
    field but ``codec_version``, the versions are one curve's when they differ only in content
    hashes and the rate value, and each rate point has exactly one of them; those runs then get
    the version with placeholders (``..._q<quality>.pt sha256:<hash>``) as their identity.
    Otherwise nothing changes and each version is its own curve.
    """
    groups: dict[tuple[Hashable, tuple[tuple[str, str], ...]], list[int]] = {}
    for i, (identity, key) in enumerate(zip(identities, curve_keys)):
        rest = tuple((k, v) for k, v in identity.items() if k != "codec_version")
        groups.setdefault((key, rest), []).append(i)
    for members in groups.values():
        versions = {identities[i]["codec_version"] for i in members}
        if len(versions) < 2:
            continue
        per_point: dict[tuple[tuple[str, str], ...], set[str]] = {}
        for i in members:
            point = tuple(sorted((k, str(v)) for k, v in rate_points[i].items()))
            per_point.setdefault(point, set()).add(identities[i]["codec_version"])
        templates = {_rate_free(identities[i]["codec_version"], rate_points[i]) for i in members}
        if len(templates) == 1 and all(len(v) == 1 for v in per_point.values()):
            template = templates.pop()
            for i in members:
                identities[i]["codec_version"] = template


def _field_of(name: str) -> str:
    """The ``FIELDS`` entry of an identity field: itself, ``vvc.*`` / ``*.*`` for a group's setting, or ``*``."""
    if name in FIELDS:
        return name
    if "." in name:
        return "vvc.*" if name.startswith("vvc.") else "*.*"
    return "*"


def _distinct_tokens(values: Sequence[str]) -> dict[str, str]:
    """Per value, a short token (split on whitespace): the first no other value has, else the first not all have."""
    tokens = {v: v.split() for v in values}
    out = {}
    for v in values:
        others = set().union(*(set(tokens[w]) for w in values if w != v))
        common = set(tokens[v]).intersection(*(set(tokens[w]) for w in values if w != v))
        out[v] = next((t for t in tokens[v] if t not in others), next((t for t in tokens[v] if t not in common), v))
    return out


def _short(name: str, values: Sequence[str]) -> dict[str, str]:
    """How a label writes each value of one identity field."""
    if name.startswith("vvc."):
        return {v: f"{name[4:]}={v}" for v in values}
    if name == "codec_version":
        return {v: f"version={t}" for v, t in _distinct_tokens(values).items()}
    if name == "model_weights":
        return {v: f"weights={v[:8] or 'unknown'}" for v in values}
    if name == "code":
        return {
            v: "commit="
            + ("+".join(c[:7] + ("-dirty" if c.endswith("-dirty") else "") for c in v.split("+")) or "unknown")
            for v in values
        }
    return {v: f"{name}={v or 'unknown'}" for v in values}


def _pipeline_labels(
    identities: Sequence[Mapping[str, str]], members: Sequence[int], encoders: Mapping[int, str]
) -> dict[int, str]:
    """``identity_labels`` for the runs ``members`` of one pipeline."""
    names = list(dict.fromkeys(n for i in members for n in identities[i]))
    varying = [n for n in names if len({identities[i].get(n, "") for i in members}) > 1]
    if not varying:
        return {i: "" for i in members}
    keys = {i: tuple(identities[i].get(n, "") for n in varying) for i in members}
    use_encoder = len(set(encoders.values())) > 1
    texts = {n: _short(n, sorted({identities[i].get(n, "") for i in members})) for n in varying}

    def label(i: int, fields: Sequence[str]) -> str:
        parts = [encoders[i]] if use_encoder and encoders[i] else []
        return ", ".join(parts + [texts[n][identities[i].get(n, "")] for n in fields])

    def tells_apart(fields: Sequence[str]) -> bool:
        seen: dict[str, tuple[str, ...]] = {}
        return all(seen.setdefault(label(i, fields), keys[i]) == keys[i] for i in members)

    shown = list(varying)
    drop = {f: k for k, f in enumerate(_DROP_ORDER)}
    for n in sorted(varying, key=lambda n: (drop.get(n, drop[_field_of(n)]), n)):
        fewer = [m for m in shown if m != n]
        if tells_apart(fewer):
            shown = fewer
    order = {f: k for k, f in enumerate(FIELDS)}
    shown.sort(key=lambda n: (order.get(_field_of(n), len(FIELDS)), n))
    exact = tells_apart(shown)
    out = {}
    for i in members:
        text = label(i, shown)
        if not exact:  # brief texts collide: a short hash of the whole identity keeps labels apart
            text += (", " if text else "") + "id=" + hashlib.sha256(repr(keys[i]).encode()).hexdigest()[:6]
        out[i] = text
    return out


def identity_labels(
    identities: Sequence[Mapping[str, str]], pipelines: Sequence[str], encoders: Sequence[str]
) -> list[str]:
    """Per run, the text naming its identity among the runs of its pipeline ("" when all agree).

    Only fields that differ between runs of one pipeline are named; of those, a field is left out
    when the rest still tell every two identities apart (the codec version first: the encoder
    setting, ``VTM-23.13 AI`` / ``VVenC medium``, usually says it shorter). When even all fields
    written briefly would give two identities one text, a short hash of the identity is added, so
    equal labels always mean equal identities.

    Args:
        identities: per run, ``run_identity`` (after ``bind_rate_versions``).
        pipelines: per run, its pipeline (labels are chosen per pipeline).
        encoders: per run, its encoder setting's short name (``encoder_label``), "" if none.
    """
    out = [""] * len(identities)
    for pipeline in dict.fromkeys(pipelines):
        members = [i for i, p in enumerate(pipelines) if p == pipeline]
        for i, text in _pipeline_labels(identities, members, {i: encoders[i] for i in members}).items():
            out[i] = text
    return out
