"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test runs it as `python get_pip_X_Y.py <pip options>` (for example `pip==24.2 --no-setuptools --no-wheel`)
inside a fresh venv. We bootstrap pip from Python's bundled wheel (ensurepip), then let that pip install what
was asked for from the package index we can reach.
"""
import ensurepip
import os
import subprocess
import sys

# ensurepip blanks the pip configuration (PIP_CONFIG_FILE=/dev/null) in this process's environment; the
# follow-up install needs the machine's pip configuration (index, CA bundle) back.
saved_env = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
wanted = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
if wanted:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"] + wanted,
                          env=saved_env)
