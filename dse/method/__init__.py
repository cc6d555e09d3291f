"""The paper's method (no torch): experiment files (`experiment`), claims about populations and
their verdicts (`claims`; good-range claims against chance in `ranges`, which-choices-matter
claims in `importanceclaims`), the stages of an
experiment and its plan (`stages`), its analysis (`summary`), the whole `dse run` sequence
(`pipeline`), ranked refinements of a space (`suggest`, with `importancehints`) and the
refine loop (`refine`)."""
