# Sourced by the scripts: sets PY to the interpreter edgec is installed into.
# $PYTHON wins; else .venv/bin/python when set-up had to make one (a Debian system Python
# is "externally managed", PEP 668); else python3.
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
fi
