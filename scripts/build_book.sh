#!/usr/bin/env bash
# Build a Jupyter Book and fail when any notebook raised while it was executed.
#
# jupyter-book 1.x logs a failing notebook as a warning, writes its traceback under
# _build/html/reports/ and still exits 0 ("build succeeded"), so a book with a broken chapter
# would be published. This runs the build, then exits 1 naming every report when there is one
# (else with jupyter-book's own status, which -W makes non-zero on any warning).
#
# usage: scripts/build_book.sh JUPYTER_BOOK BOOK_DIR [more `jupyter-book build` options]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 JUPYTER_BOOK BOOK_DIR [jupyter-book build options], e.g. $0 .venv/bin/jupyter-book ." >&2
  exit 2
fi
jupyter_book=$1
book_dir=$2
shift 2
reports="$book_dir/_build/html/reports"
rm -rf "$reports"  # reports of an earlier build must not fail this one
status=0
"$jupyter_book" build --all "$@" "$book_dir" || status=$?
if [ -d "$reports" ] && [ -n "$(find "$reports" -name '*.err.log' -print -quit)" ]; then
  echo "error: these chapters raised while executing (their tracebacks):" >&2
  find "$reports" -name '*.err.log' | sort >&2
  exit 1
fi
exit "$status"
