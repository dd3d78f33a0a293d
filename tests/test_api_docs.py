"""The Python API example of ``docs/api.md`` runs as written.

Its ``python`` blocks run in order, each in a fresh interpreter (the second one stands for "later,
in another process"), in an empty directory holding only a link to ``configs/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_api_docs_example_runs(tmp_path: Path) -> None:
    blocks = BLOCK.findall((REPO / "docs" / "api.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    outputs = []
    for code in blocks:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert "mean client accuracy:" in outputs[0]
    assert "fedsa-lora 4 ['0', '1', '2']" in outputs[1]
    assert "PeftModelForSequenceClassification 4" in outputs[1]
    adapter = tmp_path / "exports" / "client-1"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
