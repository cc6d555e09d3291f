"""The data models train on: the table of datasets and their tasks (`datasets`), readers of the
files as distributed (`readers`), image folders and their cache (`folders`) — all torch-free —
and, with torch, arrays resident on the device (`device`) or ImageNet read from disk as it
trains (`ondisk`)."""

from dse.data.datasets import DataRef, Dataset, get, names

__all__ = ["DataRef", "Dataset", "get", "names"]
