"""Analyze populations (no torch): statistics of error EDFs, ranges, trends and search
efficiency (`stats`), effect sizes, shift tests and corrections for verdicts (`effects`), the
quantized linear fit (`fitlinear`), which choices matter (`importance`, with `fanova`,
`ceiling` and `importanceplots`), figures (`plots`) and the HTML report (`report`). Pure
functions over DataFrames and arrays; the store gives them one."""
