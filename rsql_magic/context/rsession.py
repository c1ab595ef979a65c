"""R session context through rpy2: R version, attached packages, data frames in globalenv.

All the work happens in one R call (``_R_DESCRIBE`` below) that returns a character vector,
so the cost is one round trip through rpy2 however many objects there are. Row counts and
column classes are O(1) per column in R; sample rows are ``head()`` only, so a big data.frame
is never scanned. The R side stops listing objects once its own time or size budget is spent.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["R_DESCRIBE", "describe_r_session", "r_data_frames", "r_session_exists"]

# Kept as R source so it can also be run (and benchmarked) with Rscript.
R_DESCRIBE = r"""
function(no_data, max_frames, head_rows, budget_chars, time_limit, prefer,
         redact = character(), value_stats = TRUE, sample_rows = TRUE) {
  t0 <- proc.time()[["elapsed"]]
  # redact: glob patterns on column names, case-insensitive; a pattern R cannot read
  # redacts every column (fail closed)
  rx <- vapply(as.character(redact), function(p) utils::glob2rx(tolower(p)), "")
  is_red <- function(cn) {
    if (!length(rx)) return(FALSE)
    any(vapply(rx, function(r) tryCatch(grepl(r, tolower(cn)), error = function(e) TRUE), TRUE))
  }
  out <- character()
  used <- 0L
  add <- function(s) { out <<- c(out, s); used <<- used + sum(nchar(s)) + length(s) }
  add(R.version.string)
  base_pk <- c("stats", "graphics", "grDevices", "utils", "datasets", "methods", "base")
  pk <- setdiff(.packages(), base_pk)
  if (length(pk)) {
    v <- vapply(pk, function(p) tryCatch(as.character(utils::packageVersion(p)),
                                         error = function(e) "?"), "")
    add(paste0("attached packages: ", paste0(pk, " ", v, collapse = ", ")))
  } else add("attached packages: (base only)")
  nms <- ls(globalenv())
  is_df <- vapply(nms, function(n) is.data.frame(get(n, envir = globalenv())), TRUE)
  dfs <- nms[is_df]
  dfs <- c(intersect(prefer, dfs), setdiff(dfs, prefer))  # frames named in the question first
  others <- nms[!is_df]
  add(sprintf("data frames in globalenv: %d", length(dfs)))
  shown <- 0L
  for (n in dfs) {
    if (shown >= max_frames || used > budget_chars ||
        proc.time()[["elapsed"]] - t0 > time_limit) {
      add(sprintf("... %d more data frames not described (budget): %s", length(dfs) - shown,
                  paste(utils::head(dfs[-seq_len(shown)], 20), collapse = ", ")))
      break
    }
    x <- get(n, envir = globalenv())
    cls <- paste(class(x), collapse = "/")
    add(sprintf("### %s `%s`: %d rows x %d columns", cls, n, nrow(x), ncol(x)))
    cols <- names(x)
    if (length(cols) > 60) cols <- cols[1:60]
    for (cn in cols) {
      col <- x[[cn]]
      desc <- paste(class(col), collapse = "/")
      if (is_red(cn)) {
        desc <- paste(desc, "(values withheld by policy)")
      } else if (is.factor(col) && value_stats) {
        lv <- levels(col)
        desc <- sprintf("%s, %d levels: %s%s", desc, length(lv),
                        paste(utils::head(lv, 8), collapse = ", "),
                        if (length(lv) > 8) ", ..." else "")
      }
      add(sprintf("- %s: %s", cn, desc))
    }
    if (ncol(x) > 60) add(sprintf("- ... %d more columns", ncol(x) - 60))
    if (!no_data && sample_rows && head_rows > 0 && nrow(x) > 0) {
      h <- utils::head(as.data.frame(x), head_rows)
      for (j in seq_along(h)) {  # by position: names may repeat
        if (is_red(names(h)[j])) h[[j]] <- rep("[redacted]", nrow(h))
      }
      add(sprintf("first %d rows:", min(head_rows, nrow(x))))
      add(utils::capture.output(print(h)))
    }
    shown <- shown + 1L
  }
  if (length(others)) {
    o <- utils::head(others, 30)
    k <- vapply(o, function(n) class(get(n, envir = globalenv()))[1], "")
    add(paste0("other objects: ", paste0(o, " (", k, ")", collapse = ", "),
               if (length(others) > 30) sprintf(", ... (+%d)", length(others) - 30) else ""))
  }
  out
}
"""

# the names of globalenv's data frames (tibbles too): what ``--df`` may name on the R side
R_FRAMES = r"""
function() {
  nms <- ls(globalenv())
  nms[vapply(nms, function(n) is.data.frame(get(n, envir = globalenv())), TRUE)]
}
"""

_fn_cache: dict[str, object] = {}


def r_session_exists() -> bool:
    """True when an embedded R is already running (rpy2 imported and initialized).

    We never start R just to look at it: starting R costs a second and memory, and a user
    who has not loaded rpy2 has no R session to describe (``--r`` starts it explicitly).
    """
    if "rpy2.robjects" not in sys.modules:
        return False
    try:
        import rpy2.rinterface_lib.embedded as emb

        return bool(emb.isready())
    except Exception:
        return False


def r_data_frames() -> list[str]:
    """The data frames of R's globalenv, by name; none when no R session runs (R is never
    started to look) or it cannot be read."""
    if not r_session_exists():
        return []
    try:
        ro = import_robjects()
        fn = _fn_cache.get("frames")
        if fn is None:
            fn = _fn_cache["frames"] = ro.r(R_FRAMES)
        return [str(n) for n in fn()]  # type: ignore[operator]  # an R closure: callable, untyped
    except Exception:  # an R session in a state of its own: no R frames to offer
        return []


def import_robjects() -> Any:
    """Import rpy2.robjects without leaving R's LD_LIBRARY_PATH in the kernel's environment.

    rpy2 adds R's library folders to ``LD_LIBRARY_PATH`` when it starts R; processes the kernel
    starts later (``!pip``, subprocess, a Jupyter server) would then load the system libpython
    and fail. R is loaded by the time the import returns, so the variable can go back.
    """
    before = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before
    return ro


def describe_r_session(
    *,
    no_data: bool = False,
    max_frames: int = 20,
    head_rows: int = 3,
    budget_chars: int = 4000,
    time_limit: float = 0.5,
    prefer: list[str] | None = None,
    policy: Any = None,
) -> str:
    """Describe the embedded R session (starts R through rpy2 if it is not running).

    ``policy`` (:class:`rsql_magic.privacy.ContextPolicy`): redacted columns keep name and
    class only (``[redacted]`` in sample rows), ``value_stats=False`` drops factor levels,
    ``sample_rows=False`` drops the sample rows.
    """
    ro = import_robjects()

    fn = _fn_cache.get("describe")
    if fn is None:
        fn = ro.r(R_DESCRIBE)
        _fn_cache["describe"] = fn
    res = fn(  # type: ignore[operator]  # an R closure: callable, untyped
        bool(no_data),
        int(max_frames),
        int(head_rows),
        int(budget_chars),
        float(time_limit),
        ro.StrVector(list(prefer or [])),
        ro.StrVector(list(getattr(policy, "redact_columns", ()) or ())),
        bool(getattr(policy, "value_stats", True)),
        bool(getattr(policy, "sample_rows", True)),
    )
    lines = [str(s) for s in res]
    text = "\n".join(lines)
    if len(text) > budget_chars:
        text = text[: budget_chars - 30].rsplit("\n", 1)[0] + "\n... (cut to fit the budget)"
    return text
