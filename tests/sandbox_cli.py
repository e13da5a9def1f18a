"""Run the sandbox's command line from tests (shared by the sandbox, lifecycle and end-to-end tests)."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "sandbox"


def sandbox(*args, check=True, timeout=900):
    """Run scripts/sandbox with args; return the CompletedProcess (raise with its output when check fails)."""
    proc = subprocess.run([str(SANDBOX), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"scripts/sandbox {' '.join(args)} failed rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
