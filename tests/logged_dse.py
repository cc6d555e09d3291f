"""`dse` whose result writes are logged: "begin <space>/<model_id>" before Store.write_result and
"end ..." after it, appended to the file $DSE_WRITE_LOG. The random-kill test
(tests/test_kill_loop.py) reads the log to tell a model whose result was written twice.

    DSE_WRITE_LOG=log python tests/logged_dse.py train --store S ...
"""

import os

from dse.cli import main
from dse.store.core import Store

LOG = os.environ["DSE_WRITE_LOG"]
_write_result = Store.write_result


def _log(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def logged(self, space, row, *args, **kwargs):
    _log(f"begin {space}/{row['model_id']}")
    out = _write_result(self, space, row, *args, **kwargs)
    _log(f"end {space}/{row['model_id']}")
    return out


Store.write_result = logged
main()
