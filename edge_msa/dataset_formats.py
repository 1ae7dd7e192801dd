"""The dataset formats `load_dataset` reads, by name: the table its reader choice, detection and messages follow.

Light on purpose (imports nothing from edge_msa): `edge-msa train --data-format` lists and checks these names when
its parser is built, on every `edge-msa` call, and the readers (edge_msa.data) pull in numpy and the text front end.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    reader: str  # "module:function" under edge_msa.data, imported when used
    what: str  # one line for messages and --help
    names: tuple[str, ...] = ()  # file names that identify the format


FORMATS: dict[str, Format] = {
    "mosi-u": Format("mosi_u:read", "utterance-level CMU-MOSI npz (mosi_utterance_std.npz)",
                     ("mosi_utterance_std.npz",)),
    "misa": Format("misa:read", "MISA/CMU-SDK word-aligned pickles (dir with train/dev/test.pkl, or one .pkl)",
                   ("train.pkl", "dev.pkl", "test.pkl")),
    "mmsa": Format("mmsa:read", "MMSA dataset pickle (aligned_50.pkl / unaligned_50.pkl)",
                   ("aligned_50.pkl", "unaligned_50.pkl")),
    "multibench": Format("multibench:read", "MultiBench/MulT pickle (mosi_data.pkl / mosei_senti_data.pkl)",
                         ("mosi_data.pkl", "mosei_senti_data.pkl")),
    "mmsa-label-csv": Format("label_csv:read", "MMSA label.csv, text only (video_id,clip_id,text,label,mode)"),
    "edge-msa-features": Format("features_npz:read", "edge-msa featurized npz (format edge-msa-features-v1)"),
}
