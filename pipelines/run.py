"""sftcast's one command line: the `sftcast` console script, or `python pipelines/run.py`.

sftcast                                  # the default pipeline (select) on the local stack
sftcast --stack k8s --dry-run            # where each step would run, and with what
sftcast select --stack k8s --dry-run     # the same: global options may follow the command
sftcast sft                              # one pipeline by name
sftcast validate --task cls --dataset my_data/

The commands live in the `cli` package (cli/app.py assembles them); this file is the entry
point a checkout runs without installing the script.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # `python pipelines/run.py` puts pipelines/ first on the path
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)

from cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
