"""Define and sample (pure, no torch): design spaces as YAML files (`definition`), exact
discrete distributions (`dists`), RegNet widths (`regnet`), a model's spec and task (`spec`),
its flops, params and activations (`complexity`), drawing models under a window
(`sampling`) and the paper's models by name (`zoo`)."""

from dse.space.definition import Space, load
from dse.space.sampling import Window, parse_window, sample
from dse.space.spec import AnyNetSpec, Task, parse_spec

__all__ = ["AnyNetSpec", "Space", "Task", "Window", "load", "parse_spec", "parse_window",
           "sample"]
