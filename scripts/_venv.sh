# Sourced by scripts/test and scripts/lint: run inside a virtual environment of the
# checkout's own (.venv, made on first use), with the package and its test extra installed.
# An already active virtual environment is used as it is.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    printf '\n==> %s\n' "virtual environment .venv (python3 -m venv)"
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
if [ -z "${SESSIONTRACK_SKIP_INSTALL:-}" ]; then
  printf '\n==> %s\n' "Python packages (pip install -e .[test])"
  python -m pip install --quiet --disable-pip-version-check -e ".[test]"
fi
